"""The default bundles shipped in trm_service/models: intact, small, and as good as their manifests say.

Each is evaluated with ONNX Runtime on a fixed slice of its real test split (the same code as
`trm-train eval`) and must land within 1 point of the figure its manifest recorded at export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer import evaluate as ev
from trainer.export import torch_model_from_bundle
from trainer.prepare import eval_sets
from trm_bundle.manifest import load_bundle
from trm_service.runtime.session import SessionSettings, StepSession

MODELS = Path(__file__).resolve().parents[1] / "trm_service" / "models"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAX_BUNDLE_BYTES = 10 * 1000 * 1000

# (bundle, dataset folder, split, slice size, use int8, [(result set, metric in results, manifest key)])
# Text slices are large enough that 1 point is at least 2.5 standard errors of the slice's accuracy
# (sampled without replacement from the split): ~2,100 in-scope CLINC150 examples at 93%, 3,800 of the
# 7,532 newsgroup posts at 86% (with 1,000 posts, a correct routing bundle misses by chance about a third of the time).
CASES = [
    ("intent-clinc150", "clinc150", "test", 2600, False,
     [("test", "in_scope_accuracy", "test_in_scope_accuracy")]),
    ("routing-20ng", "newsgroups20", "test", 4000, False, [("test", "accuracy", "test_accuracy")]),
    ("sudoku", "sudoku", "test_easy", 50, False, [("test_easy", "accuracy", "test_easy_accuracy")]),
    ("sudoku", "sudoku", "test_medium", 50, False, [
        ("test_medium", "accuracy", "test_medium_accuracy"),
        ("test_medium", "by_source.17_clue.accuracy", "test_medium_17_clue_accuracy"),
        ("test_medium", "by_source.forum_hardest_1905_11plus.accuracy",
         "test_medium_forum_hardest_1905_11plus_accuracy"),
    ]),
    ("sudoku", "sudoku", "test_medium", 50, True, [("test_medium", "accuracy", "int8_test_medium_accuracy")]),
]


@pytest.mark.parametrize("name", ["intent-clinc150", "routing-20ng", "sudoku"])
def test_bundle_is_intact_and_small(name: str) -> None:
    bundle = MODELS / name
    manifest = load_bundle(bundle).manifest
    assert manifest.name == name
    assert sum(p.stat().st_size for p in bundle.iterdir()) <= MAX_BUNDLE_BYTES
    assert {"REPORT.md", "anytime.png"} <= set(manifest.files)
    training = manifest.require_training()
    assert training.command and training.wall_time_s > 0


@pytest.mark.parametrize(("name", "dataset", "split", "limit", "int8", "checks"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bundle_scores_what_its_manifest_says(
    name: str, dataset: str, split: str, limit: int, int8: bool, checks: list[tuple[str, str, str]]
) -> None:
    manifest = json.loads((MODELS / name / "manifest.json").read_text())
    results = ev.evaluate_bundle(MODELS / name, DATA / dataset, split, limit=limit, int8=int8)["results"]
    for set_name, metric, manifest_key in checks:
        measured, recorded = results[set_name], manifest["metrics"][manifest_key]
        for key in metric.split("."):  # "by_source.<file>.accuracy": one source file's figure
            measured = measured[key]
        assert abs(measured - recorded) <= 0.01, f"{name} {metric}: measured {measured:.4f}, manifest {recorded:.4f}"


@pytest.mark.parametrize(("name", "dataset", "split", "count", "floor"), [
    ("intent-clinc150", "clinc150", "test", 200, 0.995),
    ("routing-20ng", "newsgroups20", "test", 200, 0.995),
    ("sudoku", "sudoku", "test_medium", 24, 0.999),
])
def test_onnx_recursion_agrees_with_pytorch_on_test_examples(
    name: str, dataset: str, split: str, count: int, floor: float
) -> None:
    model, manifest = torch_model_from_bundle(MODELS / name)
    data = eval_sets(manifest, MODELS / name, DATA / dataset, split)[split].head(count)
    shape, steps = manifest.recursion.state_shape, manifest.recursion.N_sup
    ours = ev.run_recursion(ev.torch_step_fn(model), data.tokens, shape, steps)
    theirs = ev.run_recursion(ev.onnx_step_fn(MODELS / name / manifest.onnx_fp32, threads=1), data.tokens,
                              shape, steps)
    assert np.mean(ours.predictions == theirs.predictions) >= floor


@pytest.mark.parametrize(("name", "dataset"), [("intent-clinc150", "clinc150"), ("routing-20ng", "newsgroups20")])
def test_a_request_gets_the_same_bits_alone_as_in_a_call_padded_to_its_longest(name: str, dataset: str) -> None:
    """The server runs a lone request cut to its own length and a batch's requests in calls of up to 8 rows,
    padded to the call's longest: the int8 step it serves gives each row the same logits either way."""
    manifest = load_bundle(MODELS / name).manifest
    session = StepSession(MODELS / name / manifest.onnx_int8, manifest, SessionSettings())
    tokens = eval_sets(manifest, MODELS / name, DATA / dataset, "test")["test"].head(160).tokens
    lengths = [session.input_length(row[None]) for row in tokens]

    def logits(rows: list[int]) -> np.ndarray:
        length = max(lengths[row] for row in rows)
        state = session.initial_state(len(rows), session.state_rows(length))
        return session.run(tokens[rows, :length], state, state).logits

    for start in range(0, len(tokens), 8):
        rows = list(range(start, start + 8))
        together = logits(rows)
        for index, row in enumerate(rows):
            assert np.array_equal(logits([row])[0], together[index]), f"test row {row} ({lengths[row]} tokens)"
