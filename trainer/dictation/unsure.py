"""Calibrate a code-dictation bundle's unsure flag without its training run, score its names said alone, and
rewrite the bundle with both.

    python -m trainer.dictation.unsure --bundle trm_service/models/code-dictation

Decodes validation lines with the bundle's own weights and halting rule (`sequence_model_from_bundle`), chooses
`sequence.unsure_below` on them (`calibrate_unsure`, as a new run's export does), scores what the flag does on the
test lines the bundle was scored on (its evaluation.json's sample; their wrong answers too) and on names of the
test files said alone (`names_alone`, `short_names_alone`), and writes the manifest, evaluation.json and REPORT.md
again; the graphs and the plot are copied unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.dictation.corpus import load_corpus
from trainer.dictation.evaluate import (
    UNSURE_LINES,
    calibrate_unsure,
    held_out_sample,
    names_alone,
    short_names_alone,
)
from trainer.dictation.export import report_markdown
from trainer.dictation.verbalize import Verbalizer
from trainer.sequence.bundle import REPORT_FILE, bundle_halting, sequence_model_from_bundle
from trainer.sequence.evaluate import held_out_scores
from trm_bundle.manifest import Bundle, load_bundle
from trm_bundle.writer import write_bundle

EVALUATION_FILE = "evaluation.json"


def with_unsure_flag(folder: Path, cache_dir: Path, lines: int = UNSURE_LINES) -> Bundle:
    """Rewrite the dictation bundle at `folder` with its unsure threshold chosen on `lines` validation lines, and
    its figures on names said alone."""
    bundle = load_bundle(folder)
    model, halting = sequence_model_from_bundle(folder), bundle_halting(folder)
    evaluation: dict[str, Any] = json.loads((folder / EVALUATION_FILE).read_text())
    sample = evaluation["sample"]
    seed = sample["seed"]
    corpus, verbalizer = load_corpus(cache_dir, seed), Verbalizer(seed)
    unsure = calibrate_unsure(model, corpus, verbalizer, max_source_chars=sample["max_source_chars"], lines=lines,
                              seed=seed, halting=halting)
    tested = held_out_sample(corpus, verbalizer, max_chars=sample["max_chars"],
                             max_source_chars=sample["max_source_chars"], lines=sample["lines"], seed=seed)
    for kind, (written, spoken) in tested.items():
        limit = sample["max_chars"] + 8 if kind == "short" else None
        test = held_out_scores(model, spoken, written, limit, halting=halting, curves=False,
                               unsure_below=unsure["unsure_below"])["test"]
        recorded = evaluation[f"test_{kind}"]
        if test["exact_match"] != recorded["exact_match"]:
            raise ValueError(f"the bundle's weights score {test['exact_match']:.4f} exact on the {kind} test lines, "
                             f"its evaluation.json says {recorded['exact_match']:.4f}: not the lines it was scored on")
        recorded.update(unsure=test["unsure"], misses=test["misses"])
    evaluation["unsure"] = unsure
    evaluation["names"] = names_alone(model, corpus.texts("test"), verbalizer, lines=sample["lines"], seed=seed,
                                      halting=halting, max_chars=sample["max_chars"],
                                      unsure_below=unsure["unsure_below"])
    evaluation["short_names"] = short_names_alone(model, corpus.texts("test"), verbalizer, halting=halting,
                                                  unsure_below=unsure["unsure_below"])
    manifest = bundle.manifest
    manifest = dataclasses.replace(
        manifest, sequence=dataclasses.replace(manifest.sequence, unsure_below=unsure["unsure_below"]),
        metrics={**manifest.metrics, "names_exact": evaluation["names"]["exact_match"],
                 "short_names_exact": evaluation["short_names"]["exact_match"]})
    training = manifest.require_training()
    kept = {name: folder / name for name in manifest.files if name not in (EVALUATION_FILE, REPORT_FILE)}
    return write_bundle(folder, manifest, {
        **kept, EVALUATION_FILE: json.dumps(evaluation, indent=1),
        REPORT_FILE: report_markdown(evaluation, training, training.parameters)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/trm-dictation-cache"))
    parser.add_argument("--lines", type=int, default=UNSURE_LINES, help="validation lines the threshold is chosen on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = with_unsure_flag(args.bundle, args.cache_dir, args.lines)
    print(f"wrote {bundle.path}: unsure below {bundle.manifest.sequence.unsure_below:.4g}; "
          + json.dumps(json.loads((bundle.path / EVALUATION_FILE).read_text())["unsure"]))


if __name__ == "__main__":
    main()
