"""Quality benchmark: category accuracy and instance retrieval on held-out photos.

    python -m benchmarks.quality [--catalogue reference_gallery] [--queries benchmarks/queries] [--quick]

The catalogue and the queries are embedded once per backbone and preprocessing
fit; the layer / pooling / whitening / flip variants are derived from the same
forward pass, so every variant sees exactly the same decoded images. Nothing
is written to ``index_store/``. Results go to ``benchmarks/results/quality.{md,json,png}``.

Retrieval is exact (NumPy dot products) rather than usearch's HNSW: on a
catalogue of this size HNSW is exact in practice, and this keeps the quality
figures independent of index parameters. Products are collapsed to their
best-matching image and the classifier is ``fit_classifier`` on the catalogue
embeddings, as in the product.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (
    DEFAULT_CATALOGUE,
    DEFAULT_QUERIES,
    RESULTS,
    Query,
    load_queries,
    machine_info,
    machine_line,
    markdown_table,
    median,
    non_furniture_images,
    percentile,
)
from engine.backbone_specs import BACKBONES, DEFAULT_BACKBONE
from engine.backbones import FeatureExtractor, build_backbone, pool_features
from engine.catalogue import scan_catalogue
from engine.classify import CategoryClassifier, fit_classifier
from engine.vectors import normalise
from engine.images import Preprocessing, load_image, preprocess
from engine.store.meta import ALL
from engine.responses import ranked_score
from engine.search import choose_categories
from engine.settings import DEFAULT_SETTINGS

KS = (1, 5, 10)
BATCH = 16
# Whitening keeps at most this many principal directions: the catalogue has far fewer
# images than 1280 dimensions, and whitening the near-zero directions only amplifies noise.
WHITEN_DIMS = 256
# Concatenated "last blocks" of EfficientNet-Lite: the last two MBConv stages and the 1x1 head.
LAST_BLOCKS = ("stage6", "stage7", "head")
TIMING_ROUNDS = 3


@dataclass(frozen=True)
class Variant:
    """One way of turning an image into an embedding."""

    label: str
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("head",)  # several: each pooled and L2-normalised, then concatenated
    pooling: str = "avg"
    fit: str = "pad"
    flip: bool = False  # average with the embedding of the mirrored image
    whiten: bool = False  # PCA-whitening learned on the catalogue embeddings

    def preprocessing(self) -> Preprocessing:
        return replace(BACKBONES[self.backbone].preprocessing, fit=self.fit)


_SPEC = BACKBONES[DEFAULT_BACKBONE]
# The product's embedding as engine/backbones.py defines it today; the no-match threshold is calibrated on it.
DEFAULT = Variant(
    f"{_SPEC.name.replace('efficientnet_', '')} (product default)",
    backbone=_SPEC.name,
    layers=(_SPEC.layer,),
    pooling=_SPEC.pooling,
    fit=_SPEC.preprocessing.fit,
)
VARIANTS = [
    DEFAULT,
    Variant("lite1", backbone="efficientnet_lite1"),
    Variant("lite2", backbone="efficientnet_lite2"),
    Variant("lite0 GeM", pooling="gem"),
    Variant("lite0 max", pooling="max"),
    Variant("lite0 stage7 (last MBConv block)", layers=("stage7",)),
    Variant("lite0 concat stage6+stage7+head", layers=LAST_BLOCKS),
    Variant("lite0 whitened", whiten=True),
    Variant("lite0 flip", flip=True),
    Variant("lite0 crop", fit="crop"),
    Variant("lite0 GeM whitened", pooling="gem", whiten=True),
    Variant("lite0 avg pad (first default)"),
    Variant("lite2 GeM", backbone="efficientnet_lite2", pooling="gem"),
    Variant("lite2 GeM whitened", backbone="efficientnet_lite2", pooling="gem", whiten=True),
]
QUICK_VARIANTS = [DEFAULT, Variant("lite0 GeM", pooling="gem"), Variant("lite0 whitened", whiten=True)]


# --------------------------------------------------------------------------- embedding


def pooled_features(
    extractor: FeatureExtractor, batch: torch.Tensor, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], np.ndarray]:
    """Every wanted (layer, pooling) of one batch, L2-normalised, from a single forward pass."""
    with torch.inference_mode():
        maps = extractor.feature_maps(batch)
        return {(layer, pool): normalise(pool_features(maps[layer], pool).numpy()) for layer, pool in wanted}


def combine(features: dict[tuple[str, str], np.ndarray], variant: Variant) -> np.ndarray:
    """The variant's embedding from pooled features (concatenation for several layers), unit length."""
    return normalise(np.concatenate([features[(layer, variant.pooling)] for layer in variant.layers], axis=1))


class FeatureCache:
    """Pooled features of an image set, per (backbone, fit, mirrored); computed once each."""

    def __init__(self, images_for_size) -> None:
        # images_for_size(size) -> decoded images, so that JPEG draft decoding matches each backbone's size.
        self._images_for_size = images_for_size
        self._cache: dict[tuple[str, str, bool], dict[tuple[str, str], np.ndarray]] = {}

    def fill(self, variants: Sequence[Variant]) -> None:
        groups: dict[tuple[str, str, bool], set[tuple[str, str]]] = {}
        for v in variants:
            for mirrored in (False, True) if v.flip else (False,):
                groups.setdefault((v.backbone, v.fit, mirrored), set()).update((l, v.pooling) for l in v.layers)
        for key, wanted in groups.items():
            if key in self._cache and wanted <= set(self._cache[key]):
                continue
            backbone, fit, mirrored = key
            extractor = build_backbone(backbone)
            prep = replace(extractor.spec.preprocessing, fit=fit)
            images = self._images_for_size(prep.size)
            chunks: list[dict[tuple[str, str], np.ndarray]] = []
            for start in range(0, len(images), BATCH):
                batch = torch.from_numpy(preprocess(images[start : start + BATCH], prep))
                chunks.append(pooled_features(extractor, batch.flip(3) if mirrored else batch, wanted))
            self._cache[key] = {pair: np.concatenate([c[pair] for c in chunks]) for pair in wanted}

    def embeddings(self, variant: Variant) -> np.ndarray:
        vectors = combine(self._cache[(variant.backbone, variant.fit, False)], variant)
        if variant.flip:
            vectors = normalise(vectors + combine(self._cache[(variant.backbone, variant.fit, True)], variant))
        return vectors


@dataclass
class Whitening:
    """PCA-whitening: centre, rotate onto principal axes, scale each to unit variance."""

    mean: np.ndarray
    projection: np.ndarray  # [dim, kept]

    @classmethod
    def learn(cls, vectors: np.ndarray, dims: int = WHITEN_DIMS) -> Whitening:
        mean = vectors.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(vectors - mean, rowvar=False))
        keep = min(dims, len(vectors) - 1, vectors.shape[1])
        order = np.argsort(eigenvalues)[::-1][:keep]
        # The small floor keeps a degenerate direction from blowing up to infinity.
        scale = 1.0 / np.sqrt(np.maximum(eigenvalues[order], 1e-9))
        return cls(mean, (eigenvectors[:, order] * scale).astype(np.float32))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return normalise((vectors - self.mean) @ self.projection)


# --------------------------------------------------------------------------- evaluation


@dataclass
class CatalogueImages:
    """Catalogue images with their products and categories, as the product indexes them."""

    paths: list[Path]
    products: list[str]
    categories: list[str]

    @classmethod
    def scan(cls, catalogue: Path) -> CatalogueImages:
        scanned = scan_catalogue(catalogue)
        return cls(
            [scanned.root / item.path for item in scanned.images],
            [item.product_id for item in scanned.images],
            [item.category for item in scanned.images],
        )


def product_scores(similarities: np.ndarray, image_products: np.ndarray, num_products: int) -> np.ndarray:
    """Collapse [Q, images] similarities to [Q, products]: each product scores its best image."""
    scores = np.full((similarities.shape[0], num_products), -np.inf, np.float32)
    for product in range(num_products):
        scores[:, product] = similarities[:, image_products == product].max(axis=1)
    return scores


@dataclass
class VariantResult:
    variant: Variant
    category_accuracy: float
    per_category_accuracy: dict[str, float]
    confusion: list[list[int]]  # rows: true category, columns: predicted, in ``categories`` order
    categories: list[str]
    retrieval: dict[str, dict[str, float]]  # search mode ("auto", "top1", "all") -> metric -> value
    recall_curve: list[float]  # Recall@1..10, the product's "auto" search
    recall1_by_query_variant: dict[str, float]
    best_scores_correct: list[float]  # best-hit similarity of queries whose top hit is right
    best_scores_other: list[float]  # ... of non-furniture images
    ms_per_image: float = float("nan")


def evaluate(
    variant: Variant,
    catalogue_vectors: np.ndarray,
    query_vectors: np.ndarray,
    distractor_vectors: np.ndarray,
    catalogue: CatalogueImages,
    queries: Sequence[Query],
) -> VariantResult:
    """All quality metrics of one variant from its embeddings."""
    if variant.whiten:
        whitening = Whitening.learn(catalogue_vectors)
        catalogue_vectors, query_vectors, distractor_vectors = (
            whitening.apply(v) for v in (catalogue_vectors, query_vectors, distractor_vectors)
        )
    classifier = fit_classifier(catalogue_vectors, catalogue.categories)
    categories = classifier.categories

    product_names = sorted(set(catalogue.products))
    product_index = {name: i for i, name in enumerate(product_names)}
    image_products = np.array([product_index[p] for p in catalogue.products])
    product_category = {p: c for p, c in zip(catalogue.products, catalogue.categories)}
    product_categories = np.array([product_category[p] for p in product_names])

    product_category_index = np.array([categories.index(c) for c in product_categories])

    def ranked(vectors: np.ndarray, clf: CategoryClassifier, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-10 products, the similarity of each, and the predicted category, per query vector.

        Modes: "auto" is the product's (the likely categories, ranked by similarity plus
        the prior's weight x log(category probability), by engine.responses.ranked_score); "top1" is hard category-first
        search (the predicted category only); "all" searches every category by similarity.
        """
        similarity = product_scores(vectors @ catalogue_vectors.T, image_products, len(product_names))
        probabilities = clf.predict_proba(vectors)
        rank = similarity.copy()
        if mode == "auto":
            rank = ranked_score(similarity, probabilities[:, product_category_index])
        for row, probs in enumerate(probabilities):
            if mode == "top1":
                searched = [categories[int(probs.argmax())]]
            else:
                searched, _ = choose_categories(dict(zip(categories, probs.tolist())), mode)
            if ALL not in searched:
                rank[row, ~np.isin(product_categories, searched)] = -np.inf
        top = np.argsort(-rank, axis=1)[:, :10]
        return top, np.take_along_axis(similarity, top, axis=1), np.array(categories)[probabilities.argmax(axis=1)]

    truth_products = np.array([product_index.get(q.product_id, -1) for q in queries])
    truth_categories = np.array([q.category for q in queries])
    retrieval: dict[str, dict[str, float]] = {}
    for mode in ("auto", "top1", "all"):
        top, top_scores, predicted = ranked(query_vectors, classifier, mode)
        hit = top == truth_products[:, None]
        first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
        retrieval[mode] = {
            **{f"R@{k}": float(((first_hit >= 1) & (first_hit <= k)).mean()) for k in KS},
            # One relevant product per query, so AP@10 is 1/rank of that product (0 if not in the top 10).
            "mAP@10": float(np.where(first_hit > 0, 1.0 / np.maximum(first_hit, 1), 0.0).mean()),
            "catP@10": float((product_categories[top] == truth_categories[:, None]).mean()),
        }
        if mode == "auto":
            curve = [float(((first_hit >= 1) & (first_hit <= k)).mean()) for k in range(1, 11)]
            correct_best = top_scores[first_hit == 1, 0].tolist()
            by_variant = {
                name: float((first_hit[[q.variant == name for q in queries]] == 1).mean())
                for name in sorted({q.variant for q in queries})
            }
    _, distractor_scores, _ = ranked(distractor_vectors, classifier, "auto")

    confusion = np.zeros((len(categories), len(categories)), int)
    for true, guess in zip(truth_categories, predicted):
        if true in categories:
            confusion[categories.index(true), categories.index(guess)] += 1
    per_category = {c: float(confusion[i, i] / max(1, confusion[i].sum())) for i, c in enumerate(categories)}
    return VariantResult(
        variant=variant,
        category_accuracy=float((predicted == truth_categories).mean()),
        per_category_accuracy=per_category,
        confusion=confusion.tolist(),
        categories=categories,
        retrieval=retrieval,
        recall_curve=curve,
        recall1_by_query_variant=by_variant,
        best_scores_correct=correct_best,
        best_scores_other=distractor_scores[:, 0].tolist(),
    )


def time_variants(variants: Sequence[Variant], images: Sequence[Image.Image], rounds: int = TIMING_ROUNDS) -> dict[str, float]:
    """Median ms per query image (preprocess + network + pooling, one image at a time) per variant.

    Variants are timed round-robin so that a noisy neighbour slows them all alike.
    """
    samples: dict[str, list[float]] = {v.label: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            extractor = build_backbone(v.backbone)
            prep = v.preprocessing()
            wanted = {(layer, v.pooling) for layer in v.layers}
            for image in images:
                started = time.perf_counter()
                batch = torch.from_numpy(preprocess([image], prep))
                combine(pooled_features(extractor, batch, wanted), v)
                if v.flip:
                    combine(pooled_features(extractor, batch.flip(3), wanted), v)
                samples[v.label].append((time.perf_counter() - started) * 1000)
    return {label: median(values) for label, values in samples.items()}


# --------------------------------------------------------------------------- threshold


def suggest_threshold(correct: Sequence[float], other: Sequence[float]) -> float:
    """The similarity that best separates correct matches from non-furniture (balanced accuracy), rounded to 0.01."""
    candidates = np.round(np.arange(0.0, 1.0, 0.01), 2)
    correct_arr, other_arr = np.asarray(correct), np.asarray(other)
    balanced = [((correct_arr >= t).mean() + (other_arr < t).mean()) / 2 for t in candidates]
    best = max(balanced)
    # Among equally good thresholds take the middle of the gap, farthest from both sides.
    ties = candidates[np.isclose(balanced, best)]
    return float(ties[len(ties) // 2])


def distribution(values: Sequence[float]) -> str:
    if not len(values):
        return "n/a"
    qs = [0, 5, 25, 50, 75, 95, 100]
    return ", ".join(f"p{q}={percentile(values, q):.3f}" for q in qs)


# --------------------------------------------------------------------------- report


def write_report(
    results: list[VariantResult],
    info: dict[str, str],
    counts: dict[str, int],
    threshold: float,
    out: Path,
) -> str:
    base = results[0]
    rows = []
    for r in results:
        auto, top1, everything = r.retrieval["auto"], r.retrieval["top1"], r.retrieval["all"]
        rows.append(
            [
                r.variant.label,
                r.category_accuracy,
                auto["R@1"],
                auto["R@5"],
                auto["R@10"],
                auto["mAP@10"],
                auto["catP@10"],
                top1["R@1"],
                top1["R@10"],
                everything["R@1"],
                everything["R@10"],
                everything["catP@10"],
                f"{r.ms_per_image:.1f}",
                f"{r.ms_per_image / base.ms_per_image:.2f}",
            ]
        )
    headers = [
        "variant",
        "cat. acc.",
        "R@1",
        "R@5",
        "R@10",
        "mAP@10",
        "catP@10",
        "R@1 hard cat-first",
        "R@10 hard cat-first",
        "R@1 all-cats",
        "R@10 all-cats",
        "catP@10 all-cats",
        "ms/img",
        "cost ÷ default",
    ]
    confusion_rows = [[c, *row] for c, row in zip(base.categories, base.confusion)]
    correct, other = base.best_scores_correct, base.best_scores_other
    threshold_now = DEFAULT_SETTINGS.no_match_similarity
    by_variant = sorted({name for r in results for name in r.recall1_by_query_variant})
    text = "\n\n".join(
        [
            "# Quality benchmark",
            machine_line(info),
            f"Catalogue: {counts['images']} images of {counts['products']} products; "
            f"{counts['queries']} held-out queries; {counts['distractors']} non-furniture images. "
            "R@k: the query's own product among the top k products (products collapsed to their best image); "
            "mAP@10 = mean 1/rank (one relevant product per query); catP@10: share of the top 10 in the query's "
            "category. Unmarked columns use the product's `auto` search (likely categories, ranked with a "
            "category prior); *hard cat-first* searches only the predicted category; *all-cats* searches every "
            "category by similarity alone. ms/img: preprocess + network for one query image, "
            f"median over {TIMING_ROUNDS} rounds, {info['torch_threads']} torch thread(s), timed round-robin in this run (the machine is shared, so compare the ratio column).",
            markdown_table(headers, rows),
            "ResNet-50 is not compared: its ImageNet weights are not on this machine (no download).",
            f"## Category accuracy of `{base.variant.label}`\n\n"
            + markdown_table(["category", "accuracy"], list(base.per_category_accuracy.items()))
            + "\n\nConfusion matrix (rows: true, columns: predicted)\n\n"
            + markdown_table(["true \\ predicted", *base.categories], confusion_rows),
            "## Recall@1 per query condition\n\n"
            + markdown_table(
                ["variant", *by_variant],
                [[r.variant.label, *(r.recall1_by_query_variant.get(v, float("nan")) for v in by_variant)] for r in results],
            ),
            f"## No-match threshold (`{base.variant.label}`)\n\n"
            f"Best-hit similarity, correct top-1 matches ({len(correct)}): {distribution(correct)}\n\n"
            f"Best-hit similarity, non-furniture images ({len(other)}): {distribution(other)}\n\n"
            f"At the current no_match_similarity = {threshold_now}: "
            f"{np.mean(np.asarray(correct) < threshold_now):.1%} of correct matches would be flagged "
            f"'no close match', {np.mean(np.asarray(other) >= threshold_now):.1%} of non-furniture images "
            f"would not. Suggested no_match_similarity = **{threshold:.2f}** "
            f"(flags {np.mean(np.asarray(correct) < threshold):.1%} of correct matches, "
            f"lets through {np.mean(np.asarray(other) >= threshold):.1%} of non-furniture).",
        ]
    )
    out.write_text(text + "\n", encoding="utf-8")
    return text


def plot(results: list[VariantResult], info: dict[str, str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; only write the PNG
    import matplotlib.pyplot as plt

    fig, (curves, cost) = plt.subplots(1, 2, figsize=(14, 6))
    for r in results:
        curves.plot(range(1, 11), r.recall_curve, marker=".", label=r.variant.label)
    curves.set(xlabel="k (products)", ylabel="Recall@k (auto search)", title="Own product in the top k")
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    base_ms = results[0].ms_per_image
    for r in results:
        x = r.ms_per_image / base_ms
        cost.scatter(x, r.retrieval["auto"]["R@1"])
        cost.annotate(r.variant.label, (x, r.retrieval["auto"]["R@1"]), fontsize=7)
    cost.set(xlabel="embedding cost ÷ product default (same run)", ylabel="Recall@1", title="Quality vs. cost")
    cost.grid(alpha=0.3)
    fig.suptitle(f"{info['cpu']}, {info['cores']} cores, {info['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--quick", action="store_true", help="three lite0 variants and at most 100 queries")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a busy 2-core machine two threads wait on each other and run ~8x slower)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    variants = QUICK_VARIANTS if args.quick else VARIANTS
    catalogue = CatalogueImages.scan(args.catalogue)
    queries = load_queries(args.queries)
    if args.quick:
        queries = queries[:: max(1, len(queries) // 100)][:100]
    distractors = non_furniture_images()
    missing = {q.product_id for q in queries} - set(catalogue.products)
    if missing:
        print(f"warning: {len(missing)} query products are not in the catalogue, e.g. {sorted(missing)[:3]}")

    decoded: dict[tuple[str, int], list[Image.Image]] = {}

    def images_of(name: str, paths: Sequence[Path]):
        def for_size(size: int) -> list[Image.Image]:
            # Decode as the product does: JPEG draft scale chosen for the backbone's input size.
            if (name, size) not in decoded:
                decoded[(name, size)] = [load_image(p, min_side=size) for p in paths]
            return decoded[(name, size)]

        return for_size

    caches = {
        "catalogue": FeatureCache(images_of("catalogue", catalogue.paths)),
        "queries": FeatureCache(images_of("queries", [q.path for q in queries])),
        "distractors": FeatureCache(lambda size: distractors),
    }
    started = time.perf_counter()
    for name, cache in caches.items():
        cache.fill(variants)
        print(f"embedded {name} ({time.perf_counter() - started:.0f} s)", flush=True)

    timing_images = images_of("queries", [q.path for q in queries])(260)[:8]
    ms = time_variants(variants, timing_images)
    results = []
    for v in variants:
        result = evaluate(
            v,
            caches["catalogue"].embeddings(v),
            caches["queries"].embeddings(v),
            caches["distractors"].embeddings(v),
            catalogue,
            queries,
        )
        result.ms_per_image = ms[v.label]
        results.append(result)
        auto = result.retrieval["auto"]
        print(f"{v.label:38s} acc {result.category_accuracy:.3f}  R@1 {auto['R@1']:.3f}  R@10 {auto['R@10']:.3f}  {ms[v.label]:.1f} ms")

    base = results[0]
    threshold = suggest_threshold(base.best_scores_correct, base.best_scores_other)
    info = machine_info()
    counts = {
        "images": len(catalogue.paths),
        "products": len(set(catalogue.products)),
        "queries": len(queries),
        "distractors": len(distractors),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    text = write_report(results, info, counts, threshold, args.out / f"quality{suffix}.md")
    plot(results, info, args.out / f"quality{suffix}.png")
    summary = {
        "machine": info,
        "counts": counts,
        "suggested_no_match_similarity": threshold,
        "variants": [
            {**{k: v for k, v in asdict(r).items() if not k.startswith("best_scores")}, "variant": asdict(r.variant)}
            for r in results
        ],
    }
    (args.out / f"quality{suffix}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(text.split("## Category accuracy")[0])
    print(text[text.index("## No-match threshold") :])
    print(f"category counts of the queries: {dict(Counter(q.category for q in queries))}")


if __name__ == "__main__":
    main()
