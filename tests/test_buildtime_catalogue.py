"""Tests of the reference catalogue: category mapping, renderer, committed files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from buildtime.catalogue import sh3d
from buildtime.catalogue.build import GROUND_TRUTH_COLUMNS, MANIFEST_COLUMNS, VIEWS, slug

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "reference_gallery"
QUERIES = ROOT / "benchmarks" / "queries"


# --------------------------------------------------------------------------
# Category mapping, on (category, name) pairs as written in the real catalogues


@pytest.mark.parametrize(
    ("category", "name", "expected"),
    [
        ("Living room", "Armchair", "chair"),
        ("Office", "Armchair", "chair"),
        ("Kitchen", "Stool", "chair"),
        ("Living room", "Bar stool", "chair"),
        ("Office", "Class seat", "chair"),
        ("Kitchen", "Baby high chair", "chair"),
        ("Lights", "Desk lamp", "lamp"),
        ("Lights", "Pendant lamp", "lamp"),
        ("Lights", "Wall light", "lamp"),
        ("Lights", "Floor uplight", "lamp"),
        ("Lights", "Chandelier lamp", "lamp"),
        ("Living room", "Coffee table", "table"),
        ("Office", "Desk", "table"),
        ("Office", "Desk table", "table"),
        ("Exterior", "Rattan table", "table"),
        ("Bedroom", "Bed 140x190", "bed"),
        ("Bedroom", "Bunk bed", "bed"),
        ("Bedroom", "Crib", "bed"),
        ("Bedroom", "Futon", "bed"),
        ("Living room", "Corner sofa", "sofa"),
        ("Living room", "Couch", "sofa"),
        ("Living room", "Futon couch", "sofa"),
        ("Bedroom", "Convertible sofa BZ", "sofa"),
        # left out
        ("Bedroom", "Bedside table", None),
        ("Miscellaneous", "Pool table", None),
        ("Miscellaneous", "Table fan", None),
        ("Miscellaneous", "Tablet", None),
        ("Miscellaneous", "Wheelchair", None),
        ("Exterior", "Deck chair", None),
        ("Exterior", "Stone lantern", None),
        ("Lights", "Street lamp", None),
        ("Lights", "White light source", None),
        ("Lights", "Candle", None),
        ("Vehicles", "Seat Leon", None),
        ("Characters", "Sitting girl", None),
        ("Bedroom", "Opened convertible sofa BZ", None),
        ("Living room", "Bench", None),
        ("Bedroom", "Wardrobe", None),
    ],
)
def test_map_category(category: str, name: str, expected: str | None) -> None:
    assert sh3d.map_category(category, name) == expected


def test_overrides_name_real_categories() -> None:
    assert set(sh3d.INCLUDE_IDS.values()) <= set(sh3d.CATEGORIES)
    assert not set(sh3d.INCLUDE_IDS) & sh3d.EXCLUDE_IDS


def test_parse_properties_escapes_and_continuations() -> None:
    text = "# comment\nid#1=Scopia#chair\nname#1=Caf\\u00e9 chair\ntags#1=Seat, \\\n  Chair\nlicense=\u00a9 eTeks\n"
    props = sh3d.parse_properties(text)
    assert props["id#1"] == "Scopia#chair"
    assert props["name#1"] == "Café chair"
    assert props["tags#1"] == "Seat, Chair"
    assert props["license"] == "© eTeks"


def test_slug() -> None:
    assert slug("bedWithTexture") == "bed-with-texture"
    assert slug("L_shaped_sofa") == "l-shaped-sofa"


# --------------------------------------------------------------------------
# Renderer


def _write_box_model(folder: Path) -> Path:
    """A red box (60 x 40 x 30 units, Y-up) on a blue plinth, as OBJ + MTL."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "box.mtl").write_text(
        "newmtl red\nKd 0.8 0.1 0.1\nd 1\n\nnewmtl blue\nKd 0.1 0.2 0.8\nd 1\n"
    )
    lines = ["mtllib box.mtl"]
    offset = 0
    for material, extents, centre in (("red", (60, 30, 40), (0, 20, 0)), ("blue", (70, 5, 50), (0, 2.5, 0))):
        box = trimesh.creation.box(extents=extents)
        box.apply_translation(centre)
        lines += [f"v {x} {y} {z}" for x, y, z in box.vertices]
        lines.append(f"usemtl {material}")
        lines += [f"f {a + 1 + offset} {b + 1 + offset} {c + 1 + offset}" for a, b, c in box.faces]
        offset += len(box.vertices)
    obj = folder / "box.obj"
    obj.write_text("\n".join(lines) + "\n")
    return obj


@pytest.mark.slow
def test_render_view_centred_on_light_background(tmp_path: Path) -> None:
    from buildtime.catalogue.meshes import load_model, recolor
    from buildtime.catalogue.render import render_view

    scene = load_model(_write_box_model(tmp_path))
    lo, hi = scene.bounds
    assert lo[1] == pytest.approx(0.0) and hi[1] == pytest.approx(35.0)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0) and (lo[2] + hi[2]) / 2 == pytest.approx(0.0)

    image = np.asarray(render_view(scene, 35, 15, size=128))
    assert image.shape == (128, 128, 3)
    corners = np.concatenate([image[:4, :4], image[:4, -4:], image[-4:, :4], image[-4:, -4:]]).reshape(-1, 3)
    assert corners.min() >= 230, "background should be white / very light grey"

    mask = np.abs(image.astype(int) - corners.mean(axis=0)).sum(axis=2) > 30
    assert mask.mean() > 0.2, "object should fill a good part of the frame"
    ys, xs = np.nonzero(mask)
    assert abs((xs.min() + xs.max()) / 2 - 63.5) < 8 and abs((ys.min() + ys.max()) / 2 - 63.5) < 8
    assert xs.min() > 0 and xs.max() < 127 and ys.min() > 0 and ys.max() < 127, "object clipped"
    red = image[mask]
    assert (red[:, 0] > red[:, 2] + 40).mean() > 0.4, "MTL diffuse colour should show"
    assert red.max(axis=1).min() > 20, "no black faces under the studio light"

    green = np.asarray(render_view(recolor(scene, (30, 160, 40), share=0.5), 35, 15, size=128))
    assert (green[mask][:, 1] > green[mask][:, 0] + 30).mean() > 0.4, "recolour tints the dominant material"


@pytest.mark.slow
def test_renewing_the_render_context_changes_nothing_in_the_picture(tmp_path: Path, monkeypatch) -> None:
    # Contexts are renewed every RENDERS_PER_CONTEXT renders to free what OSMesa holds on to.
    from buildtime.catalogue import render
    from buildtime.catalogue.meshes import load_model

    monkeypatch.setattr(render, "RENDERS_PER_CONTEXT", 2)
    scene = load_model(_write_box_model(tmp_path))
    pictures, contexts = [], []
    for _ in range(3):
        pictures.append(np.asarray(render.render_view(scene, 35, 15, size=96)))
        contexts.append(render._RENDERERS[(96, 96)][0])
    assert contexts[0] is contexts[1] and contexts[2] is not contexts[1]
    # OSMesa is not bit-exact from one render to the next even in one context (a few edge pixels differ).
    for picture in pictures[1:]:
        assert (picture != pictures[0]).any(axis=2).mean() < 0.005


# --------------------------------------------------------------------------
# Committed catalogue and queries


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_manifest_matches_gallery_files() -> None:
    columns, rows = _read_csv(CATALOGUE / "manifest.csv")
    assert columns == MANIFEST_COLUMNS
    ids = [r["product_id"] for r in rows]
    assert len(ids) == len(set(ids)), "product ids must be unique"
    for row in rows:
        assert row["category"] in sh3d.CATEGORIES
        assert row["product_id"] == slug(row["product_id"]), "filesystem-safe id"
        assert row["name"] and row["source"] and row["license"] and row["model_id"]
        folder = CATALOGUE / row["category"] / row["product_id"]
        for view in VIEWS:
            assert (folder / f"{view}.jpg").is_file(), f"missing {folder}/{view}.jpg"
    on_disk = {(p.parent.name, p.name) for p in CATALOGUE.glob("*/*") if p.is_dir()}
    assert on_disk == {(r["category"], r["product_id"]) for r in rows}, "unlisted product folders"
    for category in sh3d.CATEGORIES:
        assert sum(r["category"] == category for r in rows) >= 40


def test_ground_truth_matches_query_files() -> None:
    columns, rows = _read_csv(QUERIES / "ground_truth.csv")
    assert columns == GROUND_TRUTH_COLUMNS
    _, products = _read_csv(CATALOGUE / "manifest.csv")
    category_of = {r["product_id"]: r["category"] for r in products}
    for row in rows:
        assert (QUERIES / row["path"]).is_file(), row["path"]
        assert category_of[row["product_id"]] == row["category"]
        assert row["path"] == f"{row['category']}/{row['product_id']}__{row['variant']}.jpg"
    on_disk = {p.relative_to(QUERIES).as_posix() for p in QUERIES.glob("*/*.jpg")}
    assert on_disk == {r["path"] for r in rows}
    assert {r["product_id"] for r in rows} == set(category_of), "every product has queries"


def test_no_query_inside_gallery() -> None:
    gallery_files = {p.name for p in CATALOGUE.rglob("*.jpg")}
    assert not any("__" in name for name in gallery_files)
    assert not QUERIES.resolve().is_relative_to(CATALOGUE.resolve())
    assert not any(p.resolve().is_relative_to(CATALOGUE.resolve()) for p in QUERIES.rglob("*"))
