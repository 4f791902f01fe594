import numpy as np
import pytest
from PIL import Image

from engine.vectors import normalise
from engine.errors import InvalidRequestError
from engine.images import ImageDecodeError
from engine.requests import UnknownCategoryError
from engine.responses import ranked_score
from engine.search import ALL, choose_categories, SearchEngine
from engine.settings import DEFAULT_SETTINGS


def test_indexed_image_finds_itself_first(search_engine, built_store):
    catalogue, _ = built_store
    response = search_engine.search(catalogue / "lamp" / "lamp-2" / "view0.jpg", k=5)
    top = response.results[0]
    assert top.product_id == "lamp-2"
    assert top.score == pytest.approx(1.0, abs=1e-3)
    assert response.category == "lamp"
    assert response.close_match
    assert sum(response.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_api_accepts_pil_images_and_bytes(search_engine, built_store):
    catalogue, _ = built_store
    path = catalogue / "chair" / "chair-1" / "view1.jpg"
    from_pil = search_engine.search(Image.open(path), k=3)
    from_bytes = search_engine.search(path.read_bytes(), k=3)
    assert from_pil.results[0].product_id == from_bytes.results[0].product_id == "chair-1"


def test_products_are_collapsed_to_their_best_image(search_engine, built_store):
    catalogue, _ = built_store
    response = search_engine.search(catalogue / "table" / "table-0" / "view1.jpg", k=10, category="all")
    ids = [r.product_id for r in response.results]
    assert len(ids) == len(set(ids)) == 10
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)


def test_category_override(search_engine, built_store):
    catalogue, _ = built_store
    query = catalogue / "lamp" / "lamp-0" / "view0.jpg"
    forced = search_engine.search(query, k=4, category="chair")
    assert forced.searched == ["chair"]
    assert {r.category for r in forced.results} == {"chair"}
    assert forced.category == "lamp"  # the prediction is still reported
    everything = search_engine.search(query, k=12, category="all")
    assert everything.searched == [ALL]
    assert {r.category for r in everything.results} == {"chair", "lamp", "table"}
    with pytest.raises(UnknownCategoryError, match="chair, |auto, all"):
        search_engine.search(query, category="wardrobe")


def test_more_like_this_uses_the_stored_vector(search_engine):
    row = next(item.row for item in search_engine.stored.images if item.product_id == "table-2")
    response = search_engine.search_item(row, k=3)
    assert response.results[0].product_id == "table-2"
    assert response.results[0].score == pytest.approx(1.0, abs=1e-3)


def test_far_query_is_not_called_a_close_match(search_engine):
    # A direction far from every catalogue vector: the nearest item is noise.
    stored = search_engine.stored.vectors
    far = -normalise(stored.mean(axis=0, keepdims=True))[0]
    response = search_engine.search_vector(far, k=3)
    assert not response.close_match
    assert any("no close match" in note for note in response.notes)


def test_bad_image_raises_decode_error(search_engine):
    with pytest.raises(ImageDecodeError):
        search_engine.search(b"this is not an image")


@pytest.mark.parametrize("k", [0, -1, 1001, "abc", None, 2.5, True])
def test_k_must_be_a_whole_number_in_range(search_engine, k):
    vector = np.zeros(search_engine.stored.vectors.shape[1], np.float32)
    with pytest.raises(InvalidRequestError, match="k must be a whole number from 1 to 1000"):
        search_engine.search_vector(vector, k=k)


def test_request_bounds_hold_on_every_entry_point(search_engine, built_store):
    catalogue, _ = built_store
    photo = catalogue / "lamp" / "lamp-0" / "view0.jpg"
    with pytest.raises(InvalidRequestError, match="max_regions"):
        search_engine.search_regions(photo, max_regions=-1)
    with pytest.raises(InvalidRequestError, match="k must"):
        search_engine.search(photo, k="abc")
    with pytest.raises(InvalidRequestError, match="no catalogue image number"):
        search_engine.search_item(len(search_engine.stored.images))
    with pytest.raises(UnknownCategoryError):
        search_engine.check_category("wardrobe")


@pytest.mark.parametrize(
    "probabilities, mode, searched, unsure",
    [
        ({"bed": 0.993, "lamp": 0.005, "sofa": 0.002}, "auto", ["bed", "lamp"], False),
        ({"bed": 0.5, "lamp": 0.4, "sofa": 0.1}, "auto", ["bed", "lamp", "sofa"], True),
        ({"bed": 0.9, "lamp": 0.05, "sofa": 0.05}, "all", [ALL], False),
        ({"bed": 0.9, "lamp": 0.05, "sofa": 0.05}, "sofa", ["sofa"], False),
    ],
)
def test_auto_searches_every_likely_category(probabilities, mode, searched, unsure):
    chosen, notes = choose_categories(probabilities, mode)
    assert chosen == searched
    assert any("unsure" in note for note in notes) == unsure


def test_category_prior_ranks_the_predicted_category_first(search_engine):
    # The mean of the lamps' vectors: lamp results first, and the prediction says lamp.
    lamps = [item.row for item in search_engine.stored.images if item.category == "lamp"]
    centre = normalise(search_engine.stored.vectors[lamps].mean(axis=0, keepdims=True))[0]
    response = search_engine.search_vector(centre, k=4)
    assert response.category == "lamp"
    assert [r.category for r in response.results] == ["lamp"] * 4


def test_auto_ranks_every_hit_by_the_one_ranked_score(search_engine):
    # The engine's order is ranked_score's (which the quality benchmark uses on arrays) over every hit.
    vector = search_engine.stored.vectors[0]
    response = search_engine.search_vector(vector, k=12)
    ranks = [float(ranked_score(r.score, response.probabilities[r.category])) for r in response.results]
    assert ranks == sorted(ranks, reverse=True)
    scores = np.array([r.score for r in response.results])
    category_probabilities = np.array([response.probabilities[r.category] for r in response.results])
    np.testing.assert_allclose(ranked_score(scores, category_probabilities), ranks)
    assert ranked_score(0.5, 0.1) == pytest.approx(0.5 + DEFAULT_SETTINGS.category_prior_weight * np.log(0.1))

def test_open_missing_store_is_a_clear_error(tmp_path):
    from engine.store.meta import StoreNotFoundError

    with pytest.raises(StoreNotFoundError, match="python -m engine index"):
        SearchEngine.open(tmp_path / "nothing")


def test_a_chair_among_other_things_is_also_searched_on_its_own(tmp_path):
    # Six rendered products of the bundled catalogue; the query is a rendered armchair (a view not indexed) small in a
    # drawn room with a drawn lamp: the detector boxes it and that piece is searched besides the whole photo.
    import shutil
    from pathlib import Path

    from buildtime.scenes import paste_cutout
    from engine.indexing import index_catalogue
    from tests.test_regions import compose

    bundled = Path(__file__).resolve().parents[1] / "reference_gallery"
    catalogue = tmp_path / "catalogue"
    for category, product in [("chair", "chair-bs0-armchair"), ("chair", "chair-bs0-antique-chair"),
                              ("chair", "chair-bs0-design-chair"), ("sofa", "sofa-bs0-couch"),
                              ("table", "table-bs0-oak-table"), ("table", "table-bs0-desk")]:
        (catalogue / category / product).mkdir(parents=True)
        for view in ("front.jpg", "side.jpg"):
            shutil.copyfile(bundled / category / product / view, catalogue / category / product / view)
    index_catalogue(catalogue, tmp_path / "store")
    engine = SearchEngine.open(tmp_path / "store")
    assert engine.detector is not None

    room, _ = compose([("lamp", 2, (620, 560), 420)])
    render = Image.open(bundled / "chair" / "chair-bs0-armchair" / "front_three_quarter.jpg").convert("RGB")
    alpha = Image.fromarray(((np.asarray(render).min(axis=2) < 240) * 255).astype(np.uint8))
    cutout = render.convert("RGBA")
    cutout.putalpha(alpha)
    paste_cutout(room, cutout.crop(alpha.getbbox()).resize((240, 280)), (230, 560))

    response = engine.search(room, k=3)
    whole = engine.search_vector(engine.embed(room), k=3)
    assert response.results[0].product_id == "chair-bs0-armchair"
    assert response.results[0].score > whole.results[0].score  # found through the piece, not the whole photo
    assert response.category == "chair"
    assert len({r.product_id for r in response.results}) == len(response.results) == 3


def test_pieces_and_whole_photo_merge_to_each_products_best():
    from engine.responses import merge_responses, SearchResponse, SearchResult

    def result(product: str, score: float) -> SearchResult:
        return SearchResult(product, product, "chair", score, f"{product}.jpg", 0)

    whole = SearchResponse("table", {"chair": 0.4, "table": 0.6}, ["table", "chair"],
                           [result("t1", 0.55), result("c1", 0.5)], False, ["unsure between table (60%) and chair (40%)",
                                                                            "no close match: the best hit has similarity 0.55"])
    piece = SearchResponse("chair", {"chair": 0.9, "table": 0.1}, ["chair", "table"],
                           [result("c1", 0.8), result("c2", 0.7)], True, [])
    merged = merge_responses([whole, piece], k=2)
    assert [(r.product_id, r.score) for r in merged.results] == [("c1", 0.8), ("c2", 0.7)]
    assert merged.category == "chair" and merged.close_match and merged.notes == []
    assert merged.searched == ["table", "chair"]


def test_settings_change_the_search_without_patching(built_store, search_engine):
    import dataclasses

    from engine.settings import DEFAULT_SETTINGS

    catalogue, store = built_store
    query = catalogue / "lamp" / "lamp-0" / "view0.jpg"
    strict = SearchEngine.open(store, settings=dataclasses.replace(DEFAULT_SETTINGS, no_match_similarity=1.01))
    assert not strict.search(query, k=3).close_match
    assert search_engine.search(query, k=3).close_match
    plain = SearchEngine.open(store, settings=dataclasses.replace(DEFAULT_SETTINGS, use_window_scorer=False))
    assert plain.window_scorer is None and search_engine.settings is DEFAULT_SETTINGS


def test_a_colour_brings_the_same_look_in_that_colour_first(search_engine, built_store):
    from engine.colours import rgb_to_hex
    from tests.conftest import product_colour

    catalogue, _ = built_store
    photo = catalogue / "chair" / "chair-0" / "view0.jpg"
    plain = search_engine.search(photo, k=4)
    assert plain.results[0].product_id == "chair-0" and plain.colour == ""
    # The other chair whose colour is farthest from chair-0's: same drawing, other colour.
    own = np.array(product_colour(0, 0))
    other = max((1, 2, 3), key=lambda p: np.abs(np.array(product_colour(0, p)) - own).sum())
    wanted = rgb_to_hex(product_colour(0, other))
    refined = search_engine.search(photo, k=4, colour=wanted)
    assert refined.results[0].product_id == f"chair-{other}" and refined.colour == wanted
    assert refined.results[0].colour_match > 0.5 > plain.results[0].colour_match == 0.0
    # The response's vectors refine again without the photo, to the same answer.
    again = search_engine.search_vectors(plain.vectors, k=4, colour=wanted)
    assert [r.product_id for r in again.results] == [r.product_id for r in refined.results]
    assert search_engine.search_item(plain.results[0].row, k=4, colour=wanted).results[0].product_id == f"chair-{other}"


def test_a_colour_not_understood_is_refused_before_any_work(search_engine, built_store):
    catalogue, _ = built_store
    photo = catalogue / "chair" / "chair-0" / "view0.jpg"
    for call in (lambda: search_engine.search(photo, colour="bluish"),
                 lambda: search_engine.search_regions(photo, colour="bluish"),
                 lambda: search_engine.search_item(0, colour="#12")):
        with pytest.raises(InvalidRequestError, match="unknown colour"):
            call()
    with pytest.raises(InvalidRequestError, match="search a photo first"):
        search_engine.search_vectors([], colour="red")


def test_loading_the_models_makes_the_detectors_sessions_a_region_search_runs(search_engine):
    # Region search runs the detector on one thread beside the windows (engine.networks.beside): that session is
    # made at start-up with the others, not in the first shopper's search.
    from engine import networks

    networks.use_threads(2)
    try:
        search_engine.load_models()
        assert {1, 2} <= set(search_engine.detector.network._sessions)
    finally:
        networks.use_threads(networks.CORES)
