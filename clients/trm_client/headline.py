"""The figure a model is known by, picked from the metrics its manifest carries (ModelInfo.metrics).

The trainer names metrics ``test_<metric>`` for a single test set and ``test_<tier>_<metric>`` for
each tier of a tiered one (Sudoku: easy, medium, hard), and ``test_<tier>_<source>_<metric>`` for one
source file of a tier (a breakdown, not a test set of its own); ``int8_`` in front marks the int8 model's.
The headline, per test set, is ``in_scope_accuracy`` when the model has one (a model with an
out-of-scope label: accuracy on the in-scope examples, the figure its dataset is known by), else
``accuracy`` (for grids: whole puzzles solved exactly); a sequence model is known by ``test_exact_match``
(whole answers written exactly). The figures are those of the step the server runs (``ModelInfo.served_step``):
the ``int8_`` ones for an int8 step where the manifest has them all, else fp32's, marked as such when the server
runs an int8 step whose figures the manifest lacks. Where the test rows leave labels out (``test_labels``), or hold
inputs the model trained on (``test_rows_trained_on``), the headline says so: its figure says less than it seems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_PREFERRED = ("in_scope_accuracy", "accuracy")
_QUALIFIED = ("_in_scope", "_halting", "_cell", "_answered")  # prefixes of `*_accuracy` names that are not test sets
_TIER_ORDER = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Headline:
    """A metric's name and its value on each test set ("" for a single test set, else the tier)."""

    name: str
    by_set: dict[str, float]
    step: str = "fp32"  # the step whose figures these are
    served_step: str = "fp32"  # the step the server runs ("": not told, a server before 2026-12-03)
    caveats: tuple[str, ...] = ()  # what the test rows leave out or share with training

    def text(self) -> str:
        """E.g. ``in_scope_accuracy 94.49% (int8)``, ``accuracy easy 100.00% medium 100.00% hard 50.67%``,
        ``accuracy 71.89% (fp32; int8 served)`` for an int8 step the manifest has no figures for, or
        ``accuracy 97.67% (int8; test rows of 1 of 6 labels)``, ``accuracy 86.22% (fp32; the server does not say
        which step it runs)``."""
        values = " ".join(f"{tier} {100 * value:.2f}%".lstrip() for tier, value in self.by_set.items())
        step = (f"{self.step}; the server does not say which step it runs" if not self.served_step
                else f"{self.step}; {self.served_step} served" if self.step != self.served_step
                else "int8" if self.step == "int8" else "")
        notes = "; ".join(note for note in (step, *self.caveats) if note)
        return f"{self.name} {values}" + (f" ({notes})" if notes else "")


def headline(metrics: Mapping[str, float], served_step: str = "fp32", labels: int = 0) -> Headline | None:
    """The headline metric of a model as the server runs it (`served_step`), or None when its metrics name no
    test set; `labels`, the model's count, tells a test of fewer labels."""
    prefixes = [
        key.removesuffix("_accuracy")
        for key in metrics
        if key.startswith("test") and key.endswith("_accuracy")
        and not key.removesuffix("_accuracy").endswith(_QUALIFIED)
    ]
    if not prefixes:
        if "test_exact_match" not in metrics:
            return None
        return _served("exact_match", {"": "test"}, metrics, served_step, _caveats(metrics, labels))
    tiers = {prefix.removeprefix("test").removeprefix("_"): prefix for prefix in prefixes}
    tiers = {tier: prefix for tier, prefix in tiers.items() if not any(tier.startswith(f"{t}_") for t in tiers if t)}
    name = next(m for m in _PREFERRED if all(f"{p}_{m}" in metrics for p in tiers.values()))
    ordered = sorted(tiers, key=lambda t: (_TIER_ORDER.index(t) if t in _TIER_ORDER else len(_TIER_ORDER), t))
    return _served(name, {tier: tiers[tier] for tier in ordered}, metrics, served_step, _caveats(metrics, labels))


def _caveats(metrics: Mapping[str, float], labels: int) -> tuple[str, ...]:
    """What the test rows leave out (labels) or share with the training rows, as the manifest counts them."""
    tested = int(metrics.get("test_labels", labels))
    trained_on = int(metrics.get("test_rows_trained_on", 0))
    return ((f"test rows of {tested} of {labels} labels",) if tested < labels else ()) + (
        (f"{trained_on:,} test row{'s' * (trained_on != 1)} seen in training",) if trained_on else ())


def _served(name: str, prefixes: dict[str, str], metrics: Mapping[str, float], served_step: str,
            caveats: tuple[str, ...]) -> Headline:
    """Metric `name` of each set (by its prefix, e.g. ``test_hard``), as the served step's figures."""
    keys = {tier: f"{prefix}_{name}" for tier, prefix in prefixes.items()}
    step = "int8" if served_step == "int8" and all(f"int8_{key}" in metrics for key in keys.values()) else "fp32"
    prefix = "int8_" if step == "int8" else ""
    return Headline(name, {tier: metrics[f"{prefix}{key}"] for tier, key in keys.items()}, step, served_step,
                    caveats)
