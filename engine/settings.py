"""The search's tuned numbers, in one record (importable without torch).

Each was chosen by a benchmark (``benchmarks/README.md`` has the sweeps). A benchmark that tries
another value passes a changed copy to ``SearchEngine`` — ``dataclasses.replace(DEFAULT_SETTINGS,
category_prior_weight=0.02)`` — and never patches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchSettings:
    """How a search predicts, widens, merges and bounds; the defaults are the product's."""

    # Below this probability the predicted category is reported as unsure.
    unsure_probability: float = 0.6
    # "auto" is a soft category-first search: every category with at least min_searched_probability is
    # searched, and hits rank by similarity + category_prior_weight * log(category probability). A hard
    # category-first search loses the product whenever the category is mispredicted, and real photos are
    # mispredicted far more often than renders; searching everything fills the results with other
    # categories. Chosen on real photos first (benchmarks.real), then checked on renders (benchmarks.quality).
    min_searched_probability: float = 0.005
    category_prior_weight: float = 0.01
    # Cosine similarity under which even the best hit is not presented as similar. Calibrated by
    # benchmarks.quality: ~1% of correct top-1 matches fall below it, no non-furniture image above.
    no_match_similarity: float = 0.60
    # A photo is also searched by the pieces of furniture the detector finds in it: its best main_pieces
    # scoring at least main_piece_score, in a decode of at least detection_min_side px (crops need the
    # pixels). Chosen on the real-photo benchmark's phone-like dev photos (benchmarks/README.md).
    main_pieces: int = 4
    main_piece_score: float = 0.1
    detection_min_side: int = 640
    # The detector's input, the photo's longer side (its aspect kept), for a search's main pieces and region
    # search alike, so that the page's region search reuses its search's detector pass. A 4:3 photo at 448 px
    # costs what a 384 x 384 square did; on the hand-labelled dev rooms (python -m benchmarks.boxes) it boxes
    # as well as 512 px and better than the squeezed 384 x 384 (benchmarks/README.md).
    detection_side: int = 448
    # Work per request is bounded whatever the photo's size: a search decodes at most search_max_side px,
    # a region search at most region_max_side (its boxes are still given in the photo's pixels).
    search_max_side: int = 2048
    region_max_side: int = 1280
    # Refining by colour ranks the colour_pool products nearest in look by similarity + colour_weight x the
    # share of the product in the colour asked for, a product colour counting as that colour by a Gaussian
    # of colour_width CIE94 units (engine.colours). Chosen on the bundled catalogue's colour variants
    # (python -m benchmarks.colour).
    colour_weight: float = 0.2
    colour_width: float = 12.0
    colour_pool: int = 50
    # The two trained parts, which benchmarks switch off to measure what each brings.
    use_detector: bool = True
    use_window_scorer: bool = True


DEFAULT_SETTINGS = SearchSettings()
