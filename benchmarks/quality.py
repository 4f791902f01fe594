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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, Query, load_queries, machine_info, median,
                               non_furniture_images)
from benchmarks.quality_report import plot, write_report
from benchmarks.quality_variants import (QUICK_VARIANTS, VARIANTS, FeatureCache, Variant, Whitening, combine,
                                         pooled_features)
from engine.backbones import build_backbone
from engine.catalogue import scan_catalogue
from engine.classify import CategoryClassifier, fit_classifier
from engine.images import load_image, preprocess
from engine.store.meta import ALL
from engine.responses import ranked_score
from engine.search import choose_categories

KS = (1, 5, 10)
TIMING_ROUNDS = 3


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


@dataclass
class Products:
    """The catalogue's products in a fixed order: their numbers, each image's product, each product's category."""

    index: dict[str, int]
    image_products: np.ndarray
    categories: np.ndarray

    @classmethod
    def of(cls, catalogue: CatalogueImages) -> Products:
        names = sorted(set(catalogue.products))
        index = {name: i for i, name in enumerate(names)}
        category = dict(zip(catalogue.products, catalogue.categories))
        return cls(index, np.array([index[p] for p in catalogue.products]), np.array([category[p] for p in names]))


def ranked(vectors: np.ndarray, catalogue_vectors: np.ndarray, products: Products, classifier: CategoryClassifier,
           mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-10 products, the similarity of each, and the predicted category, per query vector.

    Modes: "auto" is the product's (the likely categories, ranked by similarity plus
    the prior's weight x log(category probability), by engine.responses.ranked_score); "top1" is hard category-first
    search (the predicted category only); "all" searches every category by similarity.
    """
    categories = classifier.categories
    similarity = product_scores(vectors @ catalogue_vectors.T, products.image_products, len(products.index))
    probabilities = classifier.predict_proba(vectors)
    rank = similarity.copy()
    if mode == "auto":
        rank = ranked_score(similarity, probabilities[:, [categories.index(c) for c in products.categories]])
    for row, probs in enumerate(probabilities):
        if mode == "top1":
            searched = [categories[int(probs.argmax())]]
        else:
            searched, _ = choose_categories(dict(zip(categories, probs.tolist())), mode)
        if ALL not in searched:
            rank[row, ~np.isin(products.categories, searched)] = -np.inf
    top = np.argsort(-rank, axis=1)[:, :10]
    return top, np.take_along_axis(similarity, top, axis=1), np.array(categories)[probabilities.argmax(axis=1)]


def retrieval_metrics(first_hit: np.ndarray, top_categories: np.ndarray, truth_categories: np.ndarray) -> dict:
    """R@k, mAP@10 and catP@10 from each query's rank of its product (0: not in the top 10)."""
    return {
        **{f"R@{k}": float(((first_hit >= 1) & (first_hit <= k)).mean()) for k in KS},
        # One relevant product per query, so AP@10 is 1/rank of that product (0 if not in the top 10).
        "mAP@10": float(np.where(first_hit > 0, 1.0 / np.maximum(first_hit, 1), 0.0).mean()),
        "catP@10": float((top_categories == truth_categories[:, None]).mean()),
    }


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
    categories, products = classifier.categories, Products.of(catalogue)
    truth_products = np.array([products.index.get(q.product_id, -1) for q in queries])
    truth_categories = np.array([q.category for q in queries])
    retrieval: dict[str, dict[str, float]] = {}
    for mode in ("auto", "top1", "all"):
        top, top_scores, predicted = ranked(query_vectors, catalogue_vectors, products, classifier, mode)
        hit = top == truth_products[:, None]
        first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
        retrieval[mode] = retrieval_metrics(first_hit, products.categories[top], truth_categories)
        if mode == "auto":
            curve = [float(((first_hit >= 1) & (first_hit <= k)).mean()) for k in range(1, 11)]
            correct_best = top_scores[first_hit == 1, 0].tolist()
            by_variant = {
                name: float((first_hit[[q.variant == name for q in queries]] == 1).mean())
                for name in sorted({q.variant for q in queries})
            }
    _, distractor_scores, _ = ranked(distractor_vectors, catalogue_vectors, products, classifier, "auto")

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


# --------------------------------------------------------------------------- main


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def _feature_caches(catalogue: CatalogueImages, queries: Sequence[Query], distractors: list[Image.Image],
                    variants: Sequence[Variant]) -> tuple[dict[str, FeatureCache], list[Image.Image]]:
    """Every variant's embeddings of the catalogue, the queries and the distractors (one pass per backbone and
    preprocessing), and a few decoded queries to time the variants on."""
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
    return caches, images_of("queries", [q.path for q in queries])(260)[:8]


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
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
    caches, timing_images = _feature_caches(catalogue, queries, distractors, variants)
    ms = time_variants(variants, timing_images)
    results = []
    for v in variants:
        result = evaluate(v, *(caches[name].embeddings(v) for name in ("catalogue", "queries", "distractors")),
                          catalogue, queries)
        result.ms_per_image = ms[v.label]
        results.append(result)
        auto = result.retrieval["auto"]
        print(f"{v.label:38s} acc {result.category_accuracy:.3f}  R@1 {auto['R@1']:.3f}  R@10 {auto['R@10']:.3f}  {ms[v.label]:.1f} ms")

    threshold = suggest_threshold(results[0].best_scores_correct, results[0].best_scores_other)
    info = machine_info()
    counts = {"images": len(catalogue.paths), "products": len(set(catalogue.products)), "queries": len(queries),
              "distractors": len(distractors)}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    text = write_report(results, info, counts, threshold, TIMING_ROUNDS, args.out / f"quality{suffix}.md")
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
