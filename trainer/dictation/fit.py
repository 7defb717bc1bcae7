"""Train a code-dictation model on the standard-library corpus and score it on held-out files.

    python -m trainer.dictation.fit --run-dir runs/code-dictation --bundle-dir trm_service/models/code-dictation

The defaults are the first of the shipped bundle's three runs (an hour of training on 2 CPU threads); the second
continues it with short names said alone, the third on lines of every length (`--continue-from`,
`--train-max-chars`; `make models` runs all three, README.md gives the commands).

Prints progress, then the scores on the test split (lines of up to --max-chars characters, longer lines,
number-only phrases next to text2num's alpha2digit, names said alone, steps per token by kind of character), and writes
them to RUN_DIR/metrics.json. A run resumes from RUN_DIR/checkpoint.pt when there is one; with --continue-from it
starts from another run's checkpoint and trains on to --max-steps with this run's example shares.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.arguments import whole_number
from trainer.dictation.anchor import number_literals
from trainer.dictation.corpus import MAX_LINE_CHARS, Corpus, load_corpus
from trainer.dictation.evaluate import bundle_scores
from trainer.dictation.examples import MAX_GENERATED_DIGITS, SHORT_NAME_CHARS, DictationExamples
from trainer.dictation.export import export_dictation_bundle, fit_command
from trainer.dictation.names import dotted_names
from trainer.dictation.verbalize import Verbalizer
from trainer.sequence.batches import length_bucketed
from trainer.sequence.evaluate import predict, score, steps_report
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.teacher_forcing import STEP_WEIGHTS
from trainer.sequence.train import CHECKPOINT, TRAINING_DEPTHS, SequenceTrainConfig, SequenceTrainer

MAX_SOURCE_CHARS = 512  # spoken characters the model reads (training draws only those of up to --max-source-chars)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--bundle-dir", type=Path, help="write the bundle here at the end (trainer.dictation.export)")
    parser.add_argument("--continue-from", type=Path,
                        help="a finished run's folder of the same model flags and seed: start from its checkpoint "
                             "(weights, EMA, optimizer, step, learning-rate schedule) and train on to --max-steps")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/trm-dictation-cache"),
                        help="where the corpus built from the standard library is cached")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time (evaluation not included)")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--max-chars", type=int, default=40,
                        help="longest written line in the bar (the lines scored during training and at the end as "
                        "'short'), and trained on unless --train-max-chars says otherwise")
    parser.add_argument("--train-max-chars", type=int,
                        help=f"longest written line trained on (default: --max-chars; at most {MAX_LINE_CHARS}, the "
                        "corpus's longest)")
    parser.add_argument("--max-source-chars", type=int, default=200, help="longest spoken form trained on")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--encoder-layers", type=int, default=2)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--T", type=int, default=1)
    parser.add_argument("--N-sup", type=int, default=4)
    parser.add_argument("--prefix-steps", type=int, default=1,
                        help="refinement steps whose entries the prefix cache keeps (later steps refine the token "
                        "alone over the prefix of that step); N_sup: every step refines the whole prefix")
    parser.add_argument("--depth", choices=sorted(TRAINING_DEPTHS), default="every",
                        help="steps a token takes in training: " + "; ".join(
                            f"{name}: {meaning}" for name, meaning in TRAINING_DEPTHS.items()))
    parser.add_argument("--step-weights", choices=sorted(STEP_WEIGHTS), default="rising",
                        help="; ".join(f"{name}: {meaning}" for name, meaning in STEP_WEIGHTS.items()))
    parser.add_argument("--name-share", type=float, default=0.02,
                        help="share of training examples that are a name of a training line said alone (the shipped "
                        "bundle's 0.02; 0 and 0.05 measured in docs/EXPERIMENTS.md, 2026-12-03)")
    parser.add_argument("--generated-number-share", type=float, default=0.02,
                        help=f"share of training examples that are a random whole number of 1 to "
                        f"{MAX_GENERATED_DIGITS} digits said alone (the shipped bundle's 0.02; 0 measured in "
                        "docs/EXPERIMENTS.md, 2026-12-04)")
    parser.add_argument("--short-name-share", type=float, default=0.0,
                        help=f"share of training examples that are a name of at most {SHORT_NAME_CHARS} characters of "
                        "a training line said alone, each length equally likely (`x`, `os`, `sys`)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-lines", type=int, default=200, help="validation lines scored during training")
    parser.add_argument("--test-lines", type=int, default=1000, help="test lines scored at the end (each kind)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=whole_number, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    if args.continue_from and args.continue_from.resolve() == args.run_dir.resolve():
        raise SystemExit(f"--continue-from {args.continue_from} is this run's own folder: give another --run-dir")
    parent = finished_run(args.continue_from) if args.continue_from else None  # refused before anything loads
    torch.set_num_threads(args.threads)
    corpus = load_corpus(args.cache_dir, args.seed)
    verbalizer = Verbalizer(args.seed)
    train_lines = training_lines(corpus, args)
    examples = DictationExamples(train_lines, number_literals(train_lines), verbalizer, args.seed,
                                 args.max_source_chars, names=dotted_names(train_lines), name_share=args.name_share,
                                 generated_number_share=args.generated_number_share,
                                 short_name_share=args.short_name_share)
    rng = random.Random(args.seed)
    val_lines = rng.sample(corpus.texts("val", args.max_chars), args.eval_lines)
    val_spoken = [verbalizer.speak(line) for line in val_lines]

    model_cfg = SequenceConfig(
        max_source_len=MAX_SOURCE_CHARS, max_target_len=MAX_LINE_CHARS + 8, hidden_size=args.hidden_size,
        num_heads=args.num_heads, encoder_layers=args.encoder_layers, num_layers=args.num_layers,
        n=args.n, T=args.T, N_sup=args.N_sup, prefix_steps=args.prefix_steps)
    model = SequenceTRM(model_cfg)
    print(f"{sum(p.numel() for p in model.parameters())} parameters; {len(train_lines)} training lines")
    train_cfg = SequenceTrainConfig(run_dir=args.run_dir, batch_size=args.batch_size, lr=args.lr,
                                    max_steps=args.max_steps, max_minutes=args.minutes,
                                    eval_every=args.eval_every, seed=args.seed, depth=args.depth,
                                    step_weights=args.step_weights)

    def evaluate(ema: SequenceTRM) -> dict[str, float]:
        predictions = predict(ema, val_spoken, max_len=args.max_chars + 8)
        return {**score(predictions.texts, val_lines), "mean_steps": steps_report(predictions)["mean_steps"]}

    trainer = SequenceTrainer(
        train_cfg, model, lambda step: length_bucketed(examples, args.batch_size, args.seed + step), evaluate)
    if parent and not trainer.checkpoint_path.exists():
        start_from(trainer, args.continue_from)
    final = trainer.fit()
    metrics = {"args": {k: str(v) for k, v in vars(args).items()}, "training": {
        "steps": trainer.step, "minutes": trainer.elapsed_s / 60, "lines_seen": trainer.lines_seen},
        "history": trainer.history, **({"continued_from": parent} if parent else {}),
        **bundle_scores(final, corpus, verbalizer, max_chars=args.max_chars, max_source_chars=args.max_source_chars,
                        lines=args.test_lines, seed=args.seed), "wall_time_s": time.monotonic() - started}
    (args.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))
    if args.bundle_dir:
        print(f"bundle: {export_dictation_bundle(args.run_dir, args.bundle_dir).path}")
    return metrics


def training_lines(corpus: Corpus, args: argparse.Namespace) -> list[str]:
    """The training files' distinct lines of at most --train-max-chars characters (default: --max-chars, the bar's)."""
    return corpus.texts("train", args.train_max_chars or args.max_chars)


def finished_run(run_dir: Path) -> dict[str, Any]:
    """What REPORT.md records of a run that another continues from: its command, steps and wall time (from its
    metrics.json), and the same of the run it continued from, if any; SystemExit when it has not finished."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except FileNotFoundError:
        raise SystemExit(f"--continue-from {run_dir}: no metrics.json there (continue from a finished run)") from None
    return {"command": fit_command(metrics["args"]), "steps": metrics["training"]["steps"],
            "wall_time_s": metrics["wall_time_s"],
            **({"continued_from": metrics["continued_from"]} if "continued_from" in metrics else {})}


def start_from(trainer: SequenceTrainer, run_dir: Path) -> None:
    """Copy `run_dir`'s checkpoint into the trainer's run folder and load it; SystemExit (with the flag to change)
    when it is missing, of other model flags or seed, or already at --max-steps or --minutes."""
    source = run_dir / CHECKPOINT
    if not source.is_file():
        raise SystemExit(f"--continue-from {run_dir}: no {CHECKPOINT} there")
    trainer.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, trainer.checkpoint_path)
    if not trainer.load_checkpoint():
        refused = "its run has other model flags or another --seed than this one"
    elif trainer.step >= trainer.cfg.max_steps:
        refused = f"its run is at step {trainer.step}; give --max-steps above it"
    elif trainer.cfg.max_minutes and trainer.elapsed_s >= trainer.cfg.max_minutes * 60:
        refused = (f"its run trained {trainer.elapsed_s / 60:.1f} min, which count towards --minutes; give --minutes "
                   "above that, or 0 to stop at --max-steps alone")
    else:
        return
    trainer.checkpoint_path.unlink()
    raise SystemExit(f"--continue-from {run_dir}: {refused}")


if __name__ == "__main__":
    main()
