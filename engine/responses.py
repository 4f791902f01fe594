"""A search's answer: the products found, the category predicted, and the regions of a photo, as records and
as the CLI's JSON; and the one ranking formula (``ranked_score``, ``look_and_colour``) that orders them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.catalogue import CatalogueImage
from engine.colours import Colour, colours_json
from engine.regions import Region
from engine.settings import DEFAULT_SETTINGS, SearchSettings
from engine.shop_fields import SHOP_FIELDS

@dataclass(frozen=True)
class SearchResult:
    """One product found, represented by its most similar image."""

    product_id: str
    name: str
    category: str
    score: float  # cosine similarity of the best-matching image, 1.0 = identical
    path: str  # that image's file path
    row: int  # the image's row in the index, for "more like this"
    url: str = ""
    creator: str = ""
    license: str = ""
    colours: tuple[Colour, ...] = ()  # the product's dominant colours in that image
    colour_match: float = 0.0  # with a colour asked for: how much of the product is that colour, 0 to 1
    # What the shop says of the product (engine.shop_fields); "" where it says nothing.
    price: str = ""
    sale_price: str = ""
    availability: str = ""
    brand: str = ""
    colour_name: str = ""
    product_type: str = ""


def found_result(item: CatalogueImage, score: float, path: str, colour_match: float = 0.0) -> SearchResult:
    """The result for a stored image (``item``, with its ``row`` and ``colours``) found with ``score``."""
    return SearchResult(product_id=item.product_id, name=item.name, category=item.category, score=score, path=path,
                        row=item.row, url=item.url, creator=item.creator, license=item.license, colours=item.colours,
                        colour_match=colour_match, **{name: getattr(item, name) for name in SHOP_FIELDS})


def result_json(result: SearchResult) -> dict:
    """One result as the CLI and the HTTP API print it: the shop's fields where it gives them."""
    return {
        "id": result.product_id,
        "name": result.name,
        "category": result.category,
        "score": round(result.score, 4),
        "path": result.path,
        "colours": colours_json(result.colours),
        "colour_match": round(result.colour_match, 4),
        **{name: getattr(result, name) for name in SHOP_FIELDS if getattr(result, name)},
    }


@dataclass
class SearchResponse:
    """The answer to one query."""

    category: str  # predicted category
    probabilities: dict[str, float]
    searched: list[str]  # categories whose indexes were searched
    results: list[SearchResult]
    close_match: bool  # False when even the best hit is too far to call similar
    notes: list[str] = field(default_factory=list)
    colour: str = ""  # the colour the results were refined by, as asked ("" for none)
    vectors: list[np.ndarray] = field(default_factory=list, repr=False)  # the embeddings searched (to refine again)
    where: str = ""  # the filter the results meet, as engine.filters writes it ("" for none)

    def to_json(self, query: str) -> dict:
        """The CLI's JSON line for this response."""
        return {
            "query": query,
            "category": self.category,
            "probabilities": {name: round(p, 4) for name, p in self.probabilities.items()},
            "searched": self.searched,
            "close_match": self.close_match,
            "notes": self.notes,
            "colour": self.colour,
            "where": self.where,
            "results": [result_json(r) for r in self.results],
        }


@dataclass
class RegionMatch:
    """One region of a photo (with its embedding) and the search made with it."""

    region: Region
    response: SearchResponse


@dataclass
class RegionSearch:
    """The answer to a region search: the regions found, best first, each searched on its own.

    ``product_shot`` is True when the photo was judged to show one dominant
    product (see ``engine.regions.is_product_shot``); the single region then
    spans the whole photo and its response is the plain whole-photo search.
    """

    product_shot: bool
    matches: list[RegionMatch]
    image_size: tuple[int, int] = (0, 0)  # the photo's upright (width, height): the frame of the boxes
    # The photo as decoded for the search (at most SearchSettings.region_max_side), to draw the regions on.
    photo: Image.Image | None = field(default=None, repr=False, compare=False)

    def to_json(self, query: str) -> dict:
        """The CLI's JSON line: the best region's usual fields plus every region with its results. A region's
        category is what its search took it for (as the page labels it), so that it and its results agree."""
        line = self.matches[0].response.to_json(query)
        line["product_shot"] = self.product_shot
        line["regions"] = [
            {
                "box": list(match.region.box),
                "category": match.response.category,
                "confidence": round(match.region.confidence, 4),
                "results": match.response.to_json(query)["results"],
            }
            for match in self.matches
        ]
        return line


def merge_responses(responses: list[SearchResponse], k: int, settings: SearchSettings = DEFAULT_SETTINGS) -> SearchResponse:
    """One response from searches of the same photo (whole, pieces): each product at its best similarity; the
    category, probabilities and notes of the search whose best hit is the best."""
    def rank(result: SearchResult) -> float:
        return look_and_colour(result.score, result.colour_match, settings)

    best: dict[str, SearchResult] = {}
    for response in responses:
        for result in response.results:
            if result.product_id not in best or rank(result) > rank(best[result.product_id]):
                best[result.product_id] = result
    results = sorted(best.values(), key=rank, reverse=True)[:k]
    leading = max(responses, key=lambda response: response.results[0].score if response.results else -1.0)
    close_match = bool(results) and results[0].score >= settings.no_match_similarity
    notes = [note for note in leading.notes if not note.startswith(("no close match", "only "))]
    if results and not close_match:
        notes.append(no_match_note(results[0].score))
    if leading.where and len(results) < k:
        notes.append(filter_note(len(results), leading.where))
    searched = list(dict.fromkeys(name for response in responses for name in response.searched))
    vectors = [vector for response in responses for vector in response.vectors]
    return SearchResponse(leading.category, leading.probabilities, searched, results, close_match, notes,
                          leading.colour, vectors, leading.where)


def filter_note(count: int, where: str) -> str:
    return f"only {count} products meet the filter {where}"


def no_match_note(score: float) -> str:
    return f"no close match: the best hit has similarity {score:.2f}; the items shown are the nearest, not similar"


def ranked_score(similarity, category_probability, settings: SearchSettings = DEFAULT_SETTINGS):
    """What "auto" ranks a hit by: its similarity plus ``category_prior_weight`` x log(its category's probability).

    Element-wise on NumPy arrays too, so that the benchmarks rank exactly as the engine does.
    """
    return similarity + settings.category_prior_weight * np.log(np.maximum(category_probability, 1e-30))


def look_and_colour(similarity, colour_match, settings: SearchSettings = DEFAULT_SETTINGS):
    """What a search refined by colour ranks by: look similarity plus ``colour_weight`` x how much of the
    product is the colour asked for (0 to 1; 0 when none is asked)."""
    return similarity + settings.colour_weight * colour_match
