"""The quality benchmark's report: ``benchmarks/results/quality.{md,png}`` from the variants' results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from benchmarks.common import machine_line, markdown_table, percentile
from engine.settings import DEFAULT_SETTINGS

if TYPE_CHECKING:
    from benchmarks.quality import VariantResult

HEADERS = ["variant", "cat. acc.", "R@1", "R@5", "R@10", "mAP@10", "catP@10", "R@1 hard cat-first",
           "R@10 hard cat-first", "R@1 all-cats", "R@10 all-cats", "catP@10 all-cats", "ms/img", "cost ÷ default"]


def distribution(values: Sequence[float]) -> str:
    if not len(values):
        return "n/a"
    qs = [0, 5, 25, 50, 75, 95, 100]
    return ", ".join(f"p{q}={percentile(values, q):.3f}" for q in qs)


def _variant_row(result: VariantResult, base: VariantResult) -> list:
    auto, top1, everything = result.retrieval["auto"], result.retrieval["top1"], result.retrieval["all"]
    return [result.variant.label, result.category_accuracy, auto["R@1"], auto["R@5"], auto["R@10"], auto["mAP@10"],
            auto["catP@10"], top1["R@1"], top1["R@10"], everything["R@1"], everything["R@10"], everything["catP@10"],
            f"{result.ms_per_image:.1f}", f"{result.ms_per_image / base.ms_per_image:.2f}"]


def _threshold_section(base: VariantResult, threshold: float) -> str:
    """The no-match threshold: the best-hit similarities of right matches and of non-furniture, now and suggested."""
    correct, other = base.best_scores_correct, base.best_scores_other
    threshold_now = DEFAULT_SETTINGS.no_match_similarity
    return (
        f"## No-match threshold (`{base.variant.label}`)\n\n"
        f"Best-hit similarity, correct top-1 matches ({len(correct)}): {distribution(correct)}\n\n"
        f"Best-hit similarity, non-furniture images ({len(other)}): {distribution(other)}\n\n"
        f"At the current no_match_similarity = {threshold_now}: "
        f"{np.mean(np.asarray(correct) < threshold_now):.1%} of correct matches would be flagged "
        f"'no close match', {np.mean(np.asarray(other) >= threshold_now):.1%} of non-furniture images "
        f"would not. Suggested no_match_similarity = **{threshold:.2f}** "
        f"(flags {np.mean(np.asarray(correct) < threshold):.1%} of correct matches, "
        f"lets through {np.mean(np.asarray(other) >= threshold):.1%} of non-furniture)."
    )


def write_report(results: list[VariantResult], info: dict[str, str], counts: dict[str, int], threshold: float,
                 timing_rounds: int, out: Path) -> str:
    """The Markdown report, written to ``out`` and returned; the first result is the product's default."""
    base = results[0]
    confusion_rows = [[c, *row] for c, row in zip(base.categories, base.confusion)]
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
            f"median over {timing_rounds} rounds, {info['torch_threads']} torch thread(s), timed round-robin in this run (the machine is shared, so compare the ratio column).",
            markdown_table(HEADERS, [_variant_row(r, base) for r in results]),
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
            _threshold_section(base, threshold),
        ]
    )
    out.write_text(text + "\n", encoding="utf-8")
    return text


def plot(results: list[VariantResult], info: dict[str, str], out: Path) -> None:
    """Recall@k curves and quality against cost, as a PNG."""
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
