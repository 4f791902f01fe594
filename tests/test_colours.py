import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.colours import (NAMED_COLOURS, Colour, _delta_e76, _kmeans, colour_match, colour_name, colours_present,
                            dominant_colours, hex_to_rgb, lab_to_rgb, parse_colour, rgb_to_lab)
from engine.errors import InvalidRequestError
from tests.conftest import draw_furniture


def test_the_product_colour_is_found_and_the_backdrop_left_out():
    image = draw_furniture("chair", (200, 30, 40), 0, size=400)  # a red chair on white
    colours = dominant_colours(image)
    assert colours[0].name == "red" and colours[0].share > 0.8
    assert "white" not in {colour.name for colour in colours}
    assert abs(sum(colour.share for colour in colours) - 1) < 0.05


def test_two_coloured_products_give_both_colours_largest_first():
    image = Image.new("RGB", (300, 300), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle([60, 60, 240, 180], fill=(40, 90, 200))  # a blue seat
    draw.rectangle([60, 180, 240, 230], fill=(120, 75, 40))  # a brown base
    names = [colour.name for colour in dominant_colours(image)]
    assert names[:2] == ["blue", "brown"]


def test_a_photo_without_a_plain_backdrop_is_read_from_its_middle():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))  # a busy room
    ImageDraw.Draw(image).rectangle([50, 50, 150, 150], fill=(50, 140, 60))
    assert dominant_colours(image)[0].name == "green"


@pytest.mark.parametrize("text, rgb", [("blue", NAMED_COLOURS["blue"]), (" Mustard ", NAMED_COLOURS["mustard"]),
                                       ("#2d55a0", (45, 85, 160)), ("f00", (255, 0, 0))])
def test_colours_are_asked_for_by_name_or_hex(text, rgb):
    assert parse_colour(text) == rgb


@pytest.mark.parametrize("text", ["bluish", "#12345", "rgb(1,2,3)", ""])
def test_unknown_colours_say_what_is_understood(text):
    with pytest.raises(InvalidRequestError, match="hex code .* or one of: red"):
        parse_colour(text)


def test_names_follow_the_hue_not_the_lightness():
    assert colour_name((116, 151, 198)) == "blue"  # a washed-out blue, not charcoal
    assert colour_name((197, 110, 106)) == "red"
    assert colour_name((135, 135, 139)) == "grey"
    assert colour_name((250, 250, 250)) == "white"


def test_lab_round_trip():
    rgb = np.array([[12, 200, 77], [255, 255, 255], [0, 0, 0]])
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=0.5)


def test_a_colour_matches_products_of_that_colour_only():
    blue = (Colour("#3060c0", 0.9),)
    grey = (Colour("#888888", 0.9),)
    target = hex_to_rgb("#2d55a0")
    assert colour_match(blue, target, 12.0) > 0.5
    assert colour_match(grey, target, 12.0) < 0.05  # grey is not a little bit of every colour
    assert colour_match((), target, 12.0) == 0.0


def test_the_page_offers_the_colours_among_the_results_most_common_first():
    results = [(Colour("#3060c0", 0.7), Colour("#f5f5f5", 0.1)), (Colour("#2850b0", 0.5),), (Colour("#be1e2d", 0.3),)]
    assert colours_present(results) == ["blue", "red"]  # white covers a tenth of one image: not offered


def test_kmeans_clusters_by_lab_distance():
    """The k-means's squared distances from coordinate planes pick the clusters plain CIELAB distances pick."""
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.normal(centre, 6.0, (300, 3)) for centre in ((30, 0, 0), (70, 40, 10), (55, -20, 45))])
    centres, sizes = _kmeans(points, 5)
    for _ in range(12):  # the same k-means written with the distances themselves, from the same start
        labels = _delta_e76(points[:, None], centres[None]).argmin(axis=1)
        moved = np.array([points[labels == i].mean(axis=0) if (labels == i).any() else c for i, c in enumerate(centres)])
        if np.allclose(moved, centres):
            break
        centres = moved
    np.testing.assert_allclose(centres, _kmeans(points, 5)[0])
    assert sizes.sum() == len(points) and list(np.bincount(labels, minlength=5)) == list(sizes)
