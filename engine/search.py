"""Search a store: photo -> category probabilities -> similar products.

This is the engine's public API; the app and the CLI are thin layers over it::

    engine = SearchEngine.open("index_store/default")
    response = engine.search("photo.jpg", k=10, category="auto")
    for result in response.results:
        print(result.name, result.score)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from engine.backbones import FeatureExtractor, load_backbone
from engine.colours import RGB, Colour, colour_table, colours_json, parse_colour, table_match
from engine.detector import COCO_CATEGORIES, load_detector
from engine.embed import embed_images
from engine.errors import InvalidRequestError
from engine.explain import EXPLAIN_SIDE, MatchExplanation, explain_match
from engine.images import full_size, load_image
from engine.store.meta import ALL, StoredImage
from engine.store.versions import open_store, Store
from engine.regions import Region, crop_region, is_product_shot, propose_regions
from engine.window_features import PROPOSAL_SIDE, proposal_sample
from engine.settings import DEFAULT_SETTINGS, SearchSettings
from engine.window_scorer import load_window_scorer, region_ranking

# A region search decodes the photo at least at the proposal pass's size (the upper bound is a setting).
REGION_DECODE_SIDE = PROPOSAL_SIDE
# Bounds on a request's counts, so that a typo cannot ask for a million results.
MAX_RESULTS = 1000
MAX_REGIONS = 12

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image


class UnknownCategoryError(InvalidRequestError):
    """The requested category is not in the index."""


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


def result_json(result: SearchResult) -> dict:
    """One result as the CLI and the HTTP API print it."""
    return {
        "id": result.product_id,
        "name": result.name,
        "category": result.category,
        "score": round(result.score, 4),
        "path": result.path,
        "colours": colours_json(result.colours),
        "colour_match": round(result.colour_match, 4),
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

    def to_json(self, query: str) -> dict:
        """The CLI's JSON line: the best region's usual fields plus every region with its results."""
        line = self.matches[0].response.to_json(query)
        line["product_shot"] = self.product_shot
        line["regions"] = [
            {
                "box": list(match.region.box),
                "category": match.region.category,
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
    notes = [note for note in leading.notes if not note.startswith("no close match")]
    if results and not close_match:
        notes.append(_no_match_note(results[0].score))
    searched = list(dict.fromkeys(name for response in responses for name in response.searched))
    vectors = [vector for response in responses for vector in response.vectors]
    return SearchResponse(leading.category, leading.probabilities, searched, results, close_match, notes,
                          leading.colour, vectors)


def check_count(name: str, value: object, limit: int) -> None:
    """``InvalidRequestError`` unless ``value`` is a whole number from 1 to ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidRequestError(f"{name} must be a whole number from 1 to {limit}, got {value!r}")


def parse_count(name: str, value: object, limit: int) -> int:
    """A count sent by a form or an API caller (a whole number, a float such as 8.0, or digits as text) as an int;
    ``InvalidRequestError`` for anything else or out of 1 to ``limit``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    check_count(name, value, limit)
    return value


def _unknown_category(name: str, categories: list[str]) -> UnknownCategoryError:
    return UnknownCategoryError(f"unknown category {name!r}; choose auto, all or one of: {', '.join(categories)}")


def _no_match_note(score: float) -> str:
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


def check_colour(colour: str | None) -> RGB | None:
    """The colour asked for as RGB (None when none is); ``InvalidRequestError`` for one not understood."""
    return parse_colour(colour) if colour else None


def choose_categories(
    probabilities: dict[str, float], mode: str, settings: SearchSettings = DEFAULT_SETTINGS
) -> tuple[list[str], list[str]]:
    """Which categories to search for ``mode`` ("auto", "all" or a category), and notes saying why."""
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)
    if mode == "all":
        return [ALL], ["searched all categories, as asked"]
    if mode != "auto":
        if mode not in probabilities:
            raise _unknown_category(mode, ranked)
        return [mode], [f"searched {mode}, as asked"]
    searched = [ranked[0], *(name for name in ranked[1:] if probabilities[name] >= settings.min_searched_probability)]
    first = probabilities[ranked[0]]
    if first >= settings.unsure_probability or len(ranked) == 1:
        return searched, []
    second = probabilities[ranked[1]]
    return searched, [
        f"unsure between {ranked[0]} ({first:.0%}) and {ranked[1]} ({second:.0%}): "
        "results from both, ranked by similarity and category probability"
    ]


class SearchEngine:
    """A loaded store plus the backbone that built it."""

    def __init__(self, stored: Store, extractor: FeatureExtractor, catalogue: Path | None = None,
                 settings: SearchSettings = DEFAULT_SETTINGS):
        self.stored = stored
        self.settings = settings
        self.extractor = extractor
        self.catalogue = Path(catalogue) if catalogue else stored.catalogue
        # Each product's image rows, in index order.
        self.product_rows: dict[str, list[int]] = {}
        for item in stored.images:
            self.product_rows.setdefault(item.product_id, []).append(item.row)
        # Each image's row by its id, the digest of its file (how the HTTP API names catalogue images).
        self.image_rows = {item.digest: item.row for item in stored.images}
        # Search this many times k so that collapsing images into products still leaves k products.
        self._oversample = max(map(len, self.product_rows.values()), default=1)
        labels = np.array([stored.categories.index(item.category) for item in stored.images], dtype=np.int64)
        self.proposal_sample = proposal_sample(stored.vectors, labels, stored.classifier)
        # None for catalogues whose categories the trained scorer does not know: regions then rank by contrast.
        self.window_scorer = (load_window_scorer(extractor.spec.name, stored.classifier.categories)
                              if settings.use_window_scorer else None)
        if settings.use_window_scorer and self.window_scorer is None:
            log.warning("region search: %s", region_ranking(extractor.spec.name, stored.classifier.categories))
        # Every image's dominant colours, in one table, for refining by colour.
        self._colour_labs, self._colour_shares = colour_table([item.colours for item in stored.images])
        # Only for catalogues with a category the detector knows (chair, sofa, bed, table).
        knows = set(COCO_CATEGORIES.values()) & set(stored.classifier.categories)
        self.detector = load_detector() if knows and settings.use_detector else None

    @classmethod
    def open(cls, store: str | Path, catalogue: str | Path | None = None,
             settings: SearchSettings = DEFAULT_SETTINGS) -> SearchEngine:
        """Load a store with the backbone recorded in its metadata.

        ``catalogue`` overrides where the catalogue images are (if it moved).
        Raises ``StoreNotFoundError``, ``StaleStoreError``, ``DamagedStoreError``
        or ``BackboneUnavailableError`` with an actionable message.
        """
        return cls.from_store(open_store(store), catalogue, settings)

    @classmethod
    def from_store(cls, stored: Store, catalogue: str | Path | None = None,
                   settings: SearchSettings = DEFAULT_SETTINGS) -> SearchEngine:
        """An engine over an already loaded store, with the backbone recorded in its metadata."""
        return cls(stored, load_backbone(stored.backbone.name), catalogue, settings)

    @property
    def categories(self) -> list[str]:
        return self.stored.categories

    def check_category(self, category: str) -> None:
        """``UnknownCategoryError`` unless ``category`` is "auto", "all" or one of the store's."""
        if category not in ("auto", "all", *self.categories):
            raise _unknown_category(category, self.categories)

    def item_path(self, item: StoredImage) -> Path:
        return self.catalogue / item.path

    def embed(self, image: ImageInput) -> np.ndarray:
        """Decode (any supported input) and embed one image; returns a unit vector."""
        decoded = load_image(image, min_side=self.extractor.spec.preprocessing.size, max_side=self.settings.search_max_side)
        return embed_images(self.extractor, [decoded])[0]

    def search(self, image: ImageInput, k: int = 10, category: str = "auto", colour: str | None = None) -> SearchResponse:
        """Find the ``k`` products most similar to ``image``.

        ``category`` is "auto" (predict it, widen the search when unsure),
        "all", or a category name. Where the catalogue has categories the detector
        knows, the chairs, sofas, beds or tables it finds in the photo are searched
        too (a chair photographed among other furniture; only pieces of the asked
        category when one is asked), and each product keeps its best match over the
        whole photo and those pieces. ``colour`` (a name or hex code) refines the
        results: the same look in that colour first. Raises ``ImageDecodeError`` for
        bad images, ``InvalidRequestError`` for a bad count, category or colour.
        """
        check_count("k", k, MAX_RESULTS)
        self.check_category(category)
        check_colour(colour)
        if self.detector is None:
            return self.search_vectors([self.embed(image)], k, category, colour)
        decoded = load_image(image, min_side=self.settings.detection_min_side, max_side=self.settings.search_max_side)
        vectors = embed_images(self.extractor, [decoded, *self.main_pieces(decoded, category)])
        return self.search_vectors(list(vectors), k, category, colour)

    def search_vectors(self, vectors: list[np.ndarray], k: int = 10, category: str = "auto",
                       colour: str | None = None) -> SearchResponse:
        """Search with embeddings of one photo (the whole photo, its pieces), each product at its best match.

        A response's ``vectors`` can be passed back here to refine it (another colour, another count).
        """
        if not len(vectors):
            raise InvalidRequestError("nothing to search: search a photo first")
        responses = [self.search_vector(vector, k, category, colour) for vector in vectors]
        return merge_responses(responses, k, self.settings) if len(responses) > 1 else responses[0]

    def main_pieces(self, decoded: Image.Image, category: str = "auto") -> list[Image.Image]:
        """Crops of the (up to ``settings.main_pieces``) pieces of furniture ``search`` searches besides the whole photo:
        the detector's best, of ``category`` when one is asked; none without a detector."""
        if self.detector is None:
            return []
        found = self.detector.detect(decoded, self.settings.main_piece_score, self.settings.main_piece_side)
        pieces = [piece for piece in found if category in ("auto", "all") or piece.category == category]
        return [crop_region(decoded, piece.box) for piece in pieces[: self.settings.main_pieces]]

    def search_regions(
        self, image: ImageInput, k: int = 10, max_regions: int = 4, category: str = "auto", colour: str | None = None
    ) -> RegionSearch:
        """Find the furniture in a (possibly cluttered) photo and search each piece on its own.

        Each proposed region is searched with its embedding pooled from the
        proposal pass (``category`` as in ``search``; "auto" predicts it from
        that embedding). A category name also asks the proposal for pieces of
        that category only ("the chairs in this room"). A product shot (one
        dominant object) is searched whole instead. ``colour`` refines each
        region's results as in ``search``. Raises ``ImageDecodeError`` for bad
        images, ``UnknownCategoryError`` for a category not in the index.
        """
        check_count("k", k, MAX_RESULTS)
        check_count("max_regions", max_regions, MAX_REGIONS)
        self.check_category(category)
        check_colour(colour)
        targeted = category not in ("auto", "all")
        decoded = load_image(image, min_side=REGION_DECODE_SIDE, max_side=self.settings.region_max_side)
        width, height = full_size(decoded)
        regions = propose_regions(self.extractor, self.proposal_sample, decoded, max_regions, self.window_scorer,
                                  category if targeted else None, self.detector)
        if is_product_shot(decoded, regions):
            vector = embed_images(self.extractor, [decoded])[0]
            response = self.search_vector(vector, k, category, colour)
            whole = Region((0, 0, width, height), response.category, response.probabilities[response.category], vector)
            return RegionSearch(True, [RegionMatch(whole, response)], (width, height))
        scale_x, scale_y = width / decoded.width, height / decoded.height
        matches = []
        for region in regions:
            x0, y0, x1, y1 = region.box
            box = (round(x0 * scale_x), round(y0 * scale_y), min(width, round(x1 * scale_x)), min(height, round(y1 * scale_y)))
            response = self.search_vector(region.embedding, k, category, colour)
            matches.append(RegionMatch(Region(box, region.category, region.confidence, region.embedding), response))
        return RegionSearch(False, matches, (width, height))

    def explain_match(self, image: ImageInput, row: int) -> MatchExplanation:
        """Why catalogue image ``row`` matched ``image``: heat maps of the parts of each that look like the other
        (``engine.explain``). Raises ``ImageDecodeError`` for bad images."""
        self._check_row(row)
        photo = load_image(image, min_side=EXPLAIN_SIDE, max_side=self.settings.search_max_side)
        photo_vector = embed_images(self.extractor, [photo])[0]
        product = load_image(self.item_path(self.stored.images[row]), min_side=EXPLAIN_SIDE)
        return explain_match(self.extractor, photo, photo_vector, product, self.stored.vectors[row])

    def _check_row(self, row: int) -> None:
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(self.stored.images):
            raise InvalidRequestError(f"no catalogue image number {row!r}; pick one of the results shown")

    def search_item(self, row: int, k: int = 10, category: str = "auto", colour: str | None = None) -> SearchResponse:
        """"More like this": search with an indexed image's stored vector."""
        self._check_row(row)
        return self.search_vector(self.stored.vectors[row], k, category, colour)

    def search_vector(self, vector: np.ndarray, k: int = 10, category: str = "auto",
                      colour: str | None = None) -> SearchResponse:
        """Search with an already computed unit embedding (``colour`` as in ``search``)."""
        check_count("k", k, MAX_RESULTS)
        target = check_colour(colour)
        probabilities = dict(zip(self.categories, self.stored.classifier.predict_proba(vector)[0].tolist()))
        predicted = max(probabilities, key=probabilities.get)
        searched, notes = choose_categories(probabilities, category, self.settings)
        prior = probabilities if category == "auto" else None
        results = self._nearest_products(vector, searched, k, prior, target)
        close_match = bool(results) and results[0].score >= self.settings.no_match_similarity
        if results and not close_match:
            notes.append(_no_match_note(results[0].score))
        return SearchResponse(predicted, probabilities, searched, results, close_match, notes, colour or "", [vector])

    def _nearest_products(
        self, vector: np.ndarray, searched: list[str], k: int, prior: dict[str, float] | None = None,
        target: RGB | None = None,
    ) -> list[SearchResult]:
        """Best image per product over the searched indexes, ranked by similarity (plus the category prior, plus
        the colour match when a colour ``target`` is given: then among the ``colour_pool`` nearest products)."""
        best: dict[str, tuple[float, SearchResult]] = {}
        wanted = max(k, self.settings.colour_pool) if target else k
        for name in searched:
            index = self.stored.indexes[name]
            count = min(len(index), wanted * self._oversample)
            if count == 0:
                continue
            matches = index.search(vector, count)
            rows = matches.keys.astype(np.int64)
            colour_matches = (table_match(self._colour_labs[rows], self._colour_shares[rows], target,
                                          self.settings.colour_width)
                              if target else np.zeros(len(rows)))
            for row, distance, colour_match in zip(rows.tolist(), matches.distances.tolist(), colour_matches.tolist()):
                item = self.stored.images[row]
                score = 1.0 - float(distance)
                rank = float(ranked_score(score, prior[item.category], self.settings)) if prior else score
                rank = float(look_and_colour(rank, colour_match, self.settings))
                if item.product_id not in best or rank > best[item.product_id][0]:
                    best[item.product_id] = (
                        rank,
                        SearchResult(
                            product_id=item.product_id,
                            name=item.name,
                            category=item.category,
                            score=score,
                            path=str(self.item_path(item)),
                            row=item.row,
                            url=item.url,
                            creator=item.creator,
                            license=item.license,
                            colours=item.colours,
                            colour_match=colour_match,
                        ),
                    )
        ranked = sorted(best.values(), key=lambda pair: pair[0], reverse=True)
        return [result for _, result in ranked[:k]]
