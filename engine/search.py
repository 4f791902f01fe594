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
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from engine.networks import Backbone, beside, load_backbone
from engine.colours import RGB, colour_table, table_match
from engine.detector import COCO_CATEGORIES, Detector, load_detector
from engine.embed import embed_images
from engine.errors import InvalidRequestError
from engine.explain import EXPLAIN_SIDE, MatchExplanation, explain_match
from engine.filters import ProductTable, parse_where, where_text
from engine.images import full_size, load_image
from engine.store.meta import ALL, StoredImage
from engine.store.versions import open_store, Store
from engine.regions import Region, crop_region, is_product_shot, plain_border, propose_regions
from engine.models import Lazy, ModelUnavailableError
from engine.requests import MAX_REGIONS, MAX_RESULTS, check_colour, check_count, parse_regions, unknown_category
from engine.responses import (RegionMatch, RegionSearch, SearchResponse, SearchResult, filter_note, found_result,
                              look_and_colour, merge_responses, no_match_note, ranked_score)
from engine.settings import DEFAULT_SETTINGS, SearchSettings
from engine.vectors import normalise, single_threaded_blas
from engine.window_features import PROPOSAL_SIDE, ProposalSample, proposal_sample
from engine.window_scorer import WindowScorer, load_window_scorer

# A region search decodes the photo at least at the proposal pass's size (the upper bound is a setting).
REGION_DECODE_SIDE = PROPOSAL_SIDE

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image
Where = str | list[str] | None  # a filter on shop fields (engine.filters)


def choose_categories(
    probabilities: dict[str, float], mode: str, settings: SearchSettings = DEFAULT_SETTINGS
) -> tuple[list[str], list[str]]:
    """Which categories to search for ``mode`` ("auto", "all" or a category), and notes saying why."""
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)
    if mode == "all":
        return [ALL], ["searched all categories, as asked"]
    if mode != "auto":
        if mode not in probabilities:
            raise unknown_category(mode, ranked)
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

    def __init__(self, stored: Store, backbone: Backbone, catalogue: Path | None = None,
                 settings: SearchSettings = DEFAULT_SETTINGS):
        self.stored = stored
        self.settings = settings
        self.backbone = backbone
        self.catalogue = Path(catalogue) if catalogue else stored.catalogue
        # Each product's image rows, in index order.
        self.product_rows: dict[str, list[int]] = {}
        for item in stored.images:
            self.product_rows.setdefault(item.product_id, []).append(item.row)
        # Each image's row by its id, the digest of its file (how the HTTP API names catalogue images).
        self.image_rows = {item.digest: item.row for item in stored.images}
        # Search this many times k so that collapsing images into products still leaves k products.
        self._oversample = max(map(len, self.product_rows.values()), default=1)
        # What only some searches need is made by the first that does (engine.models).
        self._proposal_sample = Lazy(self._make_proposal_sample)
        self._colour_table = Lazy(lambda: colour_table([image.colours for image in stored.images]))
        self._window_scorer = Lazy(self._load_window_scorer)
        self._detector = Lazy(self._load_detector)
        self._product_table = Lazy(lambda: ProductTable(stored.images))
        # Each vector index's rows, for searches filtered on shop fields.
        categories = np.array([item.category for item in stored.images])
        self.index_rows = {ALL: np.arange(len(stored.images)),
                           **{name: np.flatnonzero(categories == name) for name in stored.categories}}

    @property
    def proposal_sample(self) -> ProposalSample:
        """The catalogue images region search compares a photo's cells with."""
        return self._proposal_sample.get()

    @property
    def window_scorer(self) -> WindowScorer | None:
        """The trained window scorer; None for catalogues whose categories it does not know (regions then rank
        by contrast)."""
        return self._window_scorer.get()

    @property
    def detector(self) -> Detector | None:
        """The detector; None for catalogues without a category it knows (chair, sofa, bed, table)."""
        return self._detector.get()

    def load_models(self) -> None:
        """Load what a search runs now rather than in the first search: on a first start this exports the
        networks' graphs (``engine.networks``), seconds a shopper would otherwise wait."""
        pixels = np.zeros((1, 3, 32, 32), np.float32)
        self.backbone.feature_map(pixels)
        if self.detector is not None:
            self.detector.network.run(pixels)
            # And its session for region search, which runs it beside the windows (~110 ms to make).
            beside(self.detector.network.run, pixels).result()
        _ = self.window_scorer, self.proposal_sample
        single_threaded_blas()  # its one-time look at the loaded BLAS libraries (~10 ms), not in the first search

    def _make_proposal_sample(self) -> ProposalSample:
        categories = self.stored.categories
        labels = np.array([categories.index(image.category) for image in self.stored.images], dtype=np.int64)
        return proposal_sample(self.stored.vectors, labels, self.stored.classifier)

    def _load_window_scorer(self) -> WindowScorer | None:
        if not self.settings.use_window_scorer:
            return None
        try:
            return load_window_scorer(self.backbone.spec.name, self.stored.classifier.categories)
        except ModelUnavailableError as error:
            log.warning("%s", error)
            return None

    def _load_detector(self) -> Detector | None:
        if not self.settings.use_detector or not set(COCO_CATEGORIES.values()) & set(self.categories):
            return None
        try:
            return load_detector()
        except ModelUnavailableError as error:
            log.warning("%s", error)
            return None

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
            raise unknown_category(category, self.categories)

    def item_path(self, item: StoredImage) -> Path:
        return self.catalogue / item.path

    def embed(self, image: ImageInput) -> np.ndarray:
        """Decode (any supported input) and embed one image; returns a unit vector."""
        decoded = load_image(image, min_side=self.backbone.spec.preprocessing.size, max_side=self.settings.search_max_side)
        return embed_images(self.backbone, [decoded])[0]

    def search(self, image: ImageInput, k: int = 10, category: str = "auto", colour: str | None = None,
               where: Where = None) -> SearchResponse:
        """Find the ``k`` products most similar to ``image``.

        ``category`` is "auto" (predict it, widen the search when unsure),
        "all", or a category name. Where the catalogue has categories the detector
        knows, the chairs, sofas, beds or tables it finds in the photo are searched
        too (a chair photographed among other furniture; only pieces of the asked
        category when one is asked), and each product keeps its best match over the
        whole photo and those pieces. ``colour`` (a name or hex code) refines the
        results: the same look in that colour first. ``where`` keeps only the products
        that meet a filter on what the shop says of them (``engine.filters``: "price<300;
        availability=in_stock"). Raises ``ImageDecodeError`` for bad images,
        ``InvalidRequestError`` for a bad count, category, colour or filter.
        """
        check_count("k", k, MAX_RESULTS)
        self.check_category(category)
        check_colour(colour)
        parse_where(where)
        if self.detector is None:
            return self.search_vectors([self.embed(image)], k, category, colour, where)
        decoded = load_image(image, min_side=self.settings.detection_min_side, max_side=self.settings.search_max_side)
        vectors = embed_images(self.backbone, [decoded, *self.main_pieces(decoded, category)])
        return self.search_vectors(list(vectors), k, category, colour, where)

    def search_vectors(self, vectors: list[np.ndarray], k: int = 10, category: str = "auto",
                       colour: str | None = None, where: Where = None) -> SearchResponse:
        """Search with embeddings of one photo (the whole photo, its pieces), each product at its best match.

        A response's ``vectors`` can be passed back here to refine it (another colour, another count).
        """
        if not len(vectors):
            raise InvalidRequestError("nothing to search: search a photo first")
        responses = [self.search_vector(vector, k, category, colour, where) for vector in vectors]
        return merge_responses(responses, k, self.settings) if len(responses) > 1 else responses[0]

    def main_pieces(self, decoded: Image.Image, category: str = "auto") -> list[Image.Image]:
        """Crops of the (up to ``settings.main_pieces``) pieces of furniture ``search`` searches besides the whole photo:
        the detector's best, of ``category`` when one is asked; none without a detector."""
        if self.detector is None:
            return []
        found = self.detector.detect(decoded, self.settings.main_piece_score, self.settings.detection_side)
        pieces = [piece for piece in found if category in ("auto", "all") or piece.category == category]
        return [crop_region(decoded, piece.box) for piece in pieces[: self.settings.main_pieces]]

    def search_regions(
        self, image: ImageInput, k: int = 10, max_regions: int = 4, category: str = "auto", colour: str | None = None,
        where: Where = None,
    ) -> RegionSearch:
        """Find the furniture in a (possibly cluttered) photo and search each piece on its own.

        Each proposed region is searched with its embedding pooled from the
        proposal pass (``category`` as in ``search``; "auto" predicts it from
        that embedding). A category name also asks the proposal for pieces of
        that category only ("the chairs in this room"). A product shot (a plain
        backdrop, ``engine.regions.is_product_shot``) is searched whole instead. ``colour`` refines each
        region's results as in ``search``, and ``where`` filters them. Raises ``ImageDecodeError`` for bad
        images, ``UnknownCategoryError`` for a category not in the index.
        """
        self._check_region_search(k, max_regions, category, colour, where)
        decoded = load_image(image, min_side=REGION_DECODE_SIDE, max_side=self.settings.region_max_side)
        return self._regions_of(decoded, plain_border(decoded), k, max_regions, category, colour, where)

    def _check_region_search(self, k: int, max_regions: int, category: str, colour: str | None, where: Where) -> None:
        check_count("k", k, MAX_RESULTS)
        check_count("max_regions", max_regions, MAX_REGIONS)
        self.check_category(category)
        check_colour(colour)
        parse_where(where)

    def _regions_of(self, decoded: Image.Image, plain: bool, k: int, max_regions: int, category: str,
                    colour: str | None, where: Where) -> RegionSearch:
        """``search_regions`` of a decoded photo whose border was found ``plain`` or not (once: it costs a resize of
        the photo)."""
        width, height = full_size(decoded)
        targeted = category not in ("auto", "all")
        # A plain backdrop makes a product shot whatever pieces would be found: no proposal pass for it.
        regions = [] if plain else propose_regions(
            self.backbone, self.proposal_sample, decoded, max_regions, self.window_scorer,
            category if targeted else None, self.detector, self.settings.detection_side)
        if is_product_shot(plain, regions):
            vector = embed_images(self.backbone, [decoded])[0]
            response = self.search_vector(vector, k, category, colour, where)
            whole = Region((0, 0, width, height), response.category, response.probabilities[response.category], vector)
            return RegionSearch(True, [RegionMatch(whole, response)], (width, height), decoded)
        scale_x, scale_y = width / decoded.width, height / decoded.height
        matches = []
        for region in self._looked_at_closely(decoded, regions):
            x0, y0, x1, y1 = region.box
            box = (round(x0 * scale_x), round(y0 * scale_y), min(width, round(x1 * scale_x)), min(height, round(y1 * scale_y)))
            response = self.search_vector(region.embedding, k, category, colour, where)
            matches.append(RegionMatch(Region(box, region.category, region.confidence, region.embedding), response))
        return RegionSearch(False, matches, (width, height), decoded)

    def search_scene_or_piece(self, image: ImageInput, k: int = 10, max_regions: int = 4, category: str = "auto",
                              colour: str | None = None, where: Where = None,
                              regions: str = "auto") -> RegionSearch | SearchResponse:
        """A photo searched as the page, the HTTP API and the CLI show it. ``regions`` "auto": a scene by its pieces
        (``search_regions``'s answer), a product shot whole (``search``'s: the photo and its main pieces, each
        product at its best); "true": always by its pieces; "false": always whole."""
        regions = parse_regions(regions)
        if regions == "false":
            return self.search(image, k, category, colour, where)
        self._check_region_search(k, max_regions, category, colour, where)
        decoded = load_image(image, min_side=REGION_DECODE_SIDE, max_side=self.settings.region_max_side)
        plain = plain_border(decoded)
        # A product shot is searched whole at once: its region search would embed and search it for nothing.
        found = None if regions == "auto" and plain else self._regions_of(
            decoded, plain, k, max_regions, category, colour, where)
        if found is None or (found.product_shot and regions == "auto"):
            return self.search(self._as_search_decodes(image, decoded), k, category, colour, where)
        return found

    def _as_search_decodes(self, image: ImageInput, decoded: Image.Image) -> ImageInput:
        """``decoded``, a region search's decode of ``image``, where ``search`` would decode it alike (the same draft
        scale, not shrunk to the region search's bound), else ``image``: a product shot is not decoded twice."""
        alike = (self.settings.detection_min_side == REGION_DECODE_SIDE
                 and max(decoded.size) < min(self.settings.region_max_side, self.settings.search_max_side))
        return decoded if alike else image

    def embed_crops(self, photo: Image.Image, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        """Unit embeddings [len(boxes), D] of the boxes cut out of ``photo`` (with ``crop_region``'s margin)."""
        return embed_images(self.backbone, [crop_region(photo, box) for box in boxes])

    def _looked_at_closely(self, photo: Image.Image, regions: list[Region]) -> list[Region]:
        """The regions, each embedded from two looks at it: the proposal pass's cells (the piece small, in its room)
        and its crop embedded on its own (the piece's details). On the dev rooms the two together found more of
        the room's products than either alone (benchmarks/README.md, "Region embeddings")."""
        if not regions:
            return regions
        crops = self.embed_crops(photo, [region.box for region in regions])
        return [replace(region, embedding=normalise(region.embedding + crop)) for region, crop in zip(regions, crops)]

    def explain_match(self, image: ImageInput, row: int) -> MatchExplanation:
        """Why catalogue image ``row`` matched ``image``: heat maps of the parts of each that look like the other
        (``engine.explain``). Raises ``ImageDecodeError`` for bad images."""
        self._check_row(row)
        photo = load_image(image, min_side=EXPLAIN_SIDE, max_side=self.settings.search_max_side)
        photo_vector = embed_images(self.backbone, [photo])[0]
        product = load_image(self.item_path(self.stored.images[row]), min_side=EXPLAIN_SIDE)
        return explain_match(self.backbone, photo, photo_vector, product, self.stored.vectors[row])

    def _check_row(self, row: int) -> None:
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(self.stored.images):
            raise InvalidRequestError(f"no catalogue image number {row!r}; pick one of the results shown")

    def search_item(self, row: int, k: int = 10, category: str = "auto", colour: str | None = None,
                    where: Where = None) -> SearchResponse:
        """"More like this": search with an indexed image's stored vector."""
        self._check_row(row)
        return self.search_vector(self.stored.vectors[row], k, category, colour, where)

    def search_vector(self, vector: np.ndarray, k: int = 10, category: str = "auto",
                      colour: str | None = None, where: Where = None) -> SearchResponse:
        """Search with an already computed unit embedding (``colour`` and ``where`` as in ``search``)."""
        check_count("k", k, MAX_RESULTS)
        target = check_colour(colour)
        conditions = parse_where(where)
        probabilities = dict(zip(self.categories, self.stored.classifier.predict_proba(vector)[0].tolist()))
        predicted = max(probabilities, key=probabilities.get)
        searched, notes = choose_categories(probabilities, category, self.settings)
        prior = probabilities if category == "auto" else None
        allowed = self._product_table.get().allowed(conditions)
        results = self._nearest_products(vector, searched, k, prior, target, allowed)
        close_match = bool(results) and results[0].score >= self.settings.no_match_similarity
        if results and not close_match:
            notes.append(no_match_note(results[0].score))
        if allowed is not None and len(results) < k:
            notes.append(filter_note(len(results), where_text(conditions)))
        return SearchResponse(predicted, probabilities, searched, results, close_match, notes, colour or "", [vector],
                              where_text(conditions))

    def _nearest_products(
        self, vector: np.ndarray, searched: list[str], k: int, prior: dict[str, float] | None = None,
        target: RGB | None = None, allowed: np.ndarray | None = None,
    ) -> list[SearchResult]:
        """Best image per product over the searched indexes, ranked by similarity (plus the category prior, plus
        the colour match when a colour ``target`` is given: then among the ``colour_pool`` nearest products),
        among the ``allowed`` rows only when a filter is given."""
        best: dict[str, tuple[float, SearchResult]] = {}
        wanted = max(k, self.settings.colour_pool) if target else k
        for name in searched:
            index = self.stored.indexes[name]
            count = min(len(index), wanted * self._oversample)
            if count == 0:
                continue
            if allowed is None:
                rows, distances = index.search(vector, count)
            else:
                rows, distances = index.search_filtered(vector, count, allowed, self.index_rows[name],
                                                        self.stored.vectors)
            labs, shares = self._colour_table.get()
            colour_matches = (table_match(labs[rows], shares[rows], target, self.settings.colour_width)
                              if target else np.zeros(len(rows)))
            for row, distance, colour_match in zip(rows.tolist(), distances.tolist(), colour_matches.tolist()):
                item = self.stored.images[row]
                score = 1.0 - float(distance)
                rank = float(ranked_score(score, prior[item.category], self.settings)) if prior else score
                rank = float(look_and_colour(rank, colour_match, self.settings))
                if item.product_id not in best or rank > best[item.product_id][0]:
                    best[item.product_id] = (rank, found_result(item, score, str(self.item_path(item)), colour_match))
        ranked = sorted(best.values(), key=lambda pair: pair[0], reverse=True)
        return [result for _, result in ranked[:k]]
