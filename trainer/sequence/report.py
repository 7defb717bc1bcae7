"""The parts of a sequence bundle's REPORT.md and anytime.png: accuracy against compute and steps per token
(bundles whose tokens refine, N_sup > 1), and examples (every sequence bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from trainer.sequence.evaluate import halting_name
from trm_bundle.spoken_numbers import numbers_agree

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_anytime(path: Path, test: dict[str, Any], fixed_steps: list[dict], halting_curve: list[dict]) -> None:
    """Left: exact match against mean steps per token (thresholds swept; fixed step counts as crosses,
    the shipped threshold circled). Middle: the steps-per-token histogram. Right: mean steps by kind."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    for when_unchanged, label in ((False, "halting head, thresholds swept"),
                                  (True, "halting head, else until unchanged")):
        points = [p for p in halting_curve if p.get("when_unchanged", False) == when_unchanged]
        if points:
            left.plot([p["mean_steps"] for p in points], [100 * p["exact_match"] for p in points], marker=".",
                      label=label)
    left.scatter([p["steps"] for p in fixed_steps], [100 * p["exact_match"] for p in fixed_steps], marker="x",
                 color="black", label="fixed steps per token")
    left.scatter([test["steps"]["mean_steps"]], [100 * test["exact_match"]], s=120, facecolors="none",
                 edgecolors="red", label=f"shipped: {halting_name(test)}")
    left.set(xlabel="mean refinement steps per token", ylabel="exact match (%)", title="Accuracy vs compute")
    histogram = test["steps"]["histogram"]
    middle.bar([int(k) for k in histogram], list(histogram.values()))
    middle.set(xlabel="refinement steps", ylabel="tokens", title="Steps per token (learned halting)")
    kinds = test["steps"]["by_kind"]
    right.barh(list(kinds), list(kinds.values()))
    right.set(xlabel="mean refinement steps", title="Steps by kind of token")
    for axes in (left, middle):
        axes.grid(alpha=0.3)
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def adaptive_compute_lines(test: dict[str, Any], fixed_steps: list[dict], halting_curve: list[dict]) -> list[str]:
    """REPORT.md's adaptive-compute section: the plot, exact match per fixed step count and per halting
    threshold, steps per token by kind and the slowest characters."""
    steps = test["steps"]
    return [
        "## Adaptive compute", "",
        "![anytime](anytime.png)", "",
        "| halting | exact match | mean steps per token |", "|---|---:|---:|",
        *[f"| fixed {p['steps']} | {100 * p['exact_match']:.2f}% | {p['steps']:.2f} |" for p in fixed_steps],
        *[f"| learned, {halting_name(p)} | "
          f"{100 * p['exact_match']:.2f}% | {p['mean_steps']:.2f} |" for p in halting_curve],
        "",
        f"Steps per token by kind (learned halting, {halting_name(test)}): "
        + ", ".join(f"{kind} {mean:.2f}" for kind, mean in steps["by_kind"].items()) + ".",
        "Slowest characters: " + ", ".join(f"`{c['char']}` {c['mean_steps']:.2f}" for c in steps["slowest_characters"])
        + ".",
        "",
    ]


def example_lines(test: dict[str, Any]) -> list[str]:
    """REPORT.md's examples and misses: input, expected and written answer; a miss with its confidence, and whether
    the unsure flag (when the scores have one: its threshold, and the spoken-numbers check where it is on) flags it."""
    wrong = round(test["count"] * (1 - test["exact_match"]))
    unsure = test.get("unsure", {})
    threshold, checked = unsure.get("unsure_below") or 0.0, "numbers_disagree" in unsure

    def flagged(source: str, written: str, confidence: float) -> bool:
        return confidence < threshold or (checked and not numbers_agree(source, written))

    misses = [f"- `{source}`  \n  `{expected}`  \n  `{written}` (confidence {confidence:.3f}"
              + (", marked unsure)" if flagged(source, written, confidence) else ")")
              for source, expected, written, confidence in test["misses"]]
    return ["## Examples (input -> expected -> written)", "",
            *[f"- `{source}`  \n  `{expected}`  \n  `{written}`" for source, expected, written in test["examples"]], "",
            f"## Misses ({len(test['misses'])} of {wrong:,} wrong answers: input -> expected -> written)", "",
            *(misses or ["None."]), ""]
