"""Filters on shop fields: read strictly, tested on every image at once, applied inside the vector search so that k
products come back whenever k meet the filter, as an exact filtered search finds them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.backbone_specs import DEFAULT_BACKBONE, get_spec
from engine.catalogue import CatalogueImage
from engine.classify import fit_classifier
from engine.errors import InvalidRequestError
from engine.filters import ProductTable, parse_where, where_text
from engine.search import SearchEngine
from engine.store.meta import StoredImage
from engine.store import vector_index
from engine.store.vector_index import EXACT_BELOW, nearest_rows
from engine.store.versions import open_store, save_store

AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "")


def test_filters_are_read_strictly_and_say_how_to_write_them():
    assert where_text(parse_where("price<300; availability=in_stock|preorder")) == (
        "price<300; availability=in_stock|preorder")
    assert where_text(parse_where(["price >= 99.5 EUR", "color!=Black", "title=Oak chair"])) == (
        "price>=99.5 EUR; colour_name!=black; name=oak chair")
    assert parse_where("") == parse_where(None) == parse_where(" ; ") == ()
    for bad, message in (("price", "cannot read the filter"), ("weight<3", "cannot filter on 'weight'"),
                         ("brand<3", "brand is text: use = or !="), ("price=3", "compare prices with <"),
                         ("price<cheap", "cannot read the price"), (3, "a filter is text")):
        with pytest.raises(InvalidRequestError, match=message):
            parse_where(bad)


def test_every_image_is_tested_at_once_and_a_product_without_the_field_fails():
    images = [CatalogueImage("a", "chair", "a.jpg", "A", price="100.00 EUR", availability="in_stock", brand="Halden"),
              CatalogueImage("b", "chair", "b.jpg", "B", price="400.00 EUR", sale_price="250.00 EUR"),
              CatalogueImage("c", "lamp", "c.jpg", "C", price="20.00 USD", availability="preorder"),
              CatalogueImage("d", "lamp", "d.jpg", "D")]
    table = ProductTable(images)
    assert table.allowed(()) is None
    assert table.allowed(parse_where("price<300")).tolist() == [True, True, True, False]  # b on sale; d has none
    assert table.allowed(parse_where("price<300 EUR")).tolist() == [True, True, False, False]
    assert table.allowed(parse_where("availability=in_stock|preorder")).tolist() == [True, False, True, False]
    assert table.allowed(parse_where("brand!=halden; category=chair")).tolist() == [False, True, False, False]


@pytest.fixture(scope="module")
def priced_engine(tmp_path_factory):
    """A store of 3,000 random unit vectors (graph-searched: over EXACT_BELOW) with prices and stock, and its engine."""
    rng = np.random.default_rng(0)
    count = 3 * EXACT_BELOW
    vectors = rng.normal(size=(count, get_spec(DEFAULT_BACKBONE).feature_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    images = [StoredImage(product_id=f"p{row}", category="chair" if row % 2 else "lamp", path=f"{row}.jpg",
                          name=f"P{row}", price=f"{rng.integers(1, 1000)}.00 EUR",
                          availability=AVAILABILITY[row % 4], row=row, digest=f"{row:040x}")
              for row in range(count)]
    classifier = fit_classifier(vectors, [image.category for image in images])
    store = tmp_path_factory.mktemp("priced") / "store"
    save_store(store, get_spec(DEFAULT_BACKBONE), store.parent, images, vectors, classifier)
    stored = open_store(store)
    assert stored.indexes["all"].choice.kind == "hnsw"
    return SearchEngine(stored, backbone=None)


def recall(engine: SearchEngine, query: np.ndarray, allowed: np.ndarray, where: str | None) -> float:
    """How many of the 10 nearest allowed rows (compared exactly) the engine's search returns."""
    response = engine.search_vector(query, k=10, category="all", where=where)
    assert len(response.results) == min(10, int(allowed.sum()))
    assert all(allowed[result.row] for result in response.results)
    exact, _ = nearest_rows(query, np.flatnonzero(allowed), engine.stored.vectors, 10)
    return len({r.row for r in response.results} & set(exact.tolist())) / len(exact)


@pytest.mark.parametrize("compared_up_to", [10**9, 0], ids=["compared", "graph"])
@pytest.mark.parametrize("where", ["price<500", "availability=in_stock", "price<20", "price<300; availability=preorder"])
def test_a_filtered_search_finds_k_products_as_an_exact_filtered_search_does(priced_engine, where, compared_up_to,
                                                                            monkeypatch):
    # Filters leaving more rows than compared_up_to (and over WIDE_FILTER of them) are searched through the graph.
    monkeypatch.setattr(vector_index, "BRUTE_FORCE_ROWS", compared_up_to)
    monkeypatch.setattr(vector_index, "WIDE_FILTER", 0.0)
    engine, rng = priced_engine, np.random.default_rng(1)
    allowed = ProductTable(engine.stored.images).allowed(parse_where(where))
    everything = np.ones(len(allowed), dtype=bool)
    filtered, unfiltered, found_itself = [], [], []
    for _ in range(20):
        row = int(rng.choice(np.flatnonzero(allowed)))
        query = engine.stored.vectors[row] + rng.normal(0, 0.01, 1280).astype(np.float32)
        query /= np.linalg.norm(query)
        filtered.append(recall(engine, query, allowed, where))
        unfiltered.append(recall(engine, query, everything, None))
        found_itself.append(engine.search_vector(query, k=1, category="all", where=where).results[0].row == row)
    # Random vectors are nearly equidistant, the graph's hardest case (its own recall is under 1, and its build
    # differs from run to run): the filter loses nothing beyond it. Compared directly, the search is exact.
    if compared_up_to:
        assert all(found_itself) and np.mean(filtered) == 1.0
    assert np.mean(found_itself) >= 0.9 and np.mean(filtered) >= min(0.9, np.mean(unfiltered) - 0.05)


def test_too_narrow_a_filter_says_how_many_products_meet_it(priced_engine):
    query = priced_engine.stored.vectors[0]
    response = priced_engine.search_vector(query, k=10, category="all", where="product_id=p1|p2|p3")
    assert {r.product_id for r in response.results} == {"p1", "p2", "p3"}
    assert "only 3 products meet the filter product_id=p1|p2|p3" in response.notes
    assert response.to_json("q")["where"] == "product_id=p1|p2|p3"


def test_the_products_own_fields_come_back_with_each_result(priced_engine):
    response = priced_engine.search_vector(priced_engine.stored.vectors[5], k=1, category="all")
    (result,) = response.results
    stored = priced_engine.stored.images[5]
    assert (result.price, result.availability) == (stored.price, stored.availability)
    assert response.to_json("q")["results"][0]["price"] == stored.price
    assert dataclasses.asdict(result)["brand"] == ""
