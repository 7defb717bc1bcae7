"""The public data sets of the `trm-train fit` bars (docs/TRAINING.md), written out as a user brings
data: text,label CSV files, one for training and one for testing.

`python -m trainer.bar_sets --out DIR` writes them from the shared data folder (`--fit` then runs every bar's
`trm-train fit --train TRAIN --test TEST`, with no other flag but where the bundle and the log go, one after
the other, and prints the figures docs/TRAINING.md quotes; `make training-bars`):
- clinc150-train.csv / clinc150-test.csv: CLINC150 train + oos_train / test + oos_test (label `oos`);
- clinc150-fewshot10-train.csv: `few_shot_indices` of clinc150-train, 10 per intent, seed 0;
- newsgroups20-train.csv / newsgroups20-test.csv: 20 Newsgroups, subject + newline + body as the text.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainer.arguments import whole_number
from trainer.data.text import TextSplit, load_clinc150, load_newsgroups

FEW_SHOT_PER_LABEL = 10


def few_shot_indices(
    labels: Sequence[str], per_label: int, seed: int, oos_label: str | None = None
) -> np.ndarray:
    """Sorted row indices of a seeded few-shot sample.

    Every label but `oos_label` keeps `per_label` rows (all of them when it has fewer), drawn without
    replacement. The out-of-scope label keeps the same fraction of its rows as the other labels keep of
    theirs, rounded: with CLINC150's 100 rows per intent and 100 oos rows, 10 per intent gives 10 oos rows.
    Labels are visited in sorted order, each drawing a permutation from one generator seeded with `seed`.
    """
    if per_label < 1:
        raise ValueError(f"per_label must be at least 1, got {per_label}")
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, dtype=object)
    in_scope = sorted(set(labels) - {oos_label})
    rows_of = {label: np.flatnonzero(label_array == label) for label in sorted(set(labels))}
    picked = {label: rng.permutation(rows_of[label])[:per_label] for label in in_scope}
    if oos_label in rows_of:
        kept = sum(len(rows) for rows in picked.values())
        rate = kept / sum(len(rows_of[label]) for label in in_scope) if in_scope else 1.0
        picked[oos_label] = rng.permutation(rows_of[oos_label])[: round(rate * len(rows_of[oos_label]))]
    return np.sort(np.concatenate(list(picked.values()))) if picked else np.zeros(0, dtype=np.int64)


def write_text_csv(path: Path, split: TextSplit) -> Path:
    """`split` as a text,label CSV (the format `trm-train fit --train/--test` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(split.texts, split.labels, strict=True))
    return path


def write_bar_sets(data_root: Path, out: Path, seed: int = 0) -> dict[str, Path]:
    """Writes the bars' CSV files into `out`; returns them by name."""
    clinc, newsgroups = Path(data_root) / "clinc150", Path(data_root) / "newsgroups20"
    clinc_train = load_clinc150(clinc, "train")
    few_shot = clinc_train.subset(few_shot_indices(clinc_train.labels, FEW_SHOT_PER_LABEL, seed, "oos"))
    splits = {
        "clinc150-train": clinc_train,
        "clinc150-test": load_clinc150(clinc, "test"),
        f"clinc150-fewshot{FEW_SHOT_PER_LABEL}-train": few_shot,
        "newsgroups20-train": load_newsgroups(newsgroups, "train"),
        "newsgroups20-test": load_newsgroups(newsgroups, "test"),
    }
    return {name: write_text_csv(Path(out) / f"{name}.csv", split) for name, split in splits.items()}


VOICE_COMMANDS = Path(__file__).resolve().parents[1] / "clients" / "examples" / "voice_pipeline" / "commands.csv"


def bar_fits(sets: dict[str, Path]) -> dict[str, tuple[Path, Path | None]]:
    """The bars' fits by bundle name: (training file, test file or None for the 10% hold-out)."""
    few_shot = f"clinc150-fewshot{FEW_SHOT_PER_LABEL}-train"
    return {
        "voice-commands": (VOICE_COMMANDS, None),
        "clinc150-train": (sets["clinc150-train"], sets["clinc150-test"]),
        few_shot: (sets[few_shot], sets["clinc150-test"]),
        "newsgroups20-train": (sets["newsgroups20-train"], sets["newsgroups20-test"]),
    }


def run_bar_fits(sets: dict[str, Path], out: Path, only: Sequence[str] = ()) -> list[dict[str, object]]:
    """Runs each bar's default fit (or those named in `only`; bundles and logs under `out`); returns its
    wall time and metrics."""
    rows = []
    for name, (train, test) in bar_fits(sets).items():
        if only and name not in only:
            continue
        command = ["trm-train", "fit", "--train", str(train), *(["--test", str(test)] if test else [])]
        log = out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log, "w") as handle:
            code = subprocess.run([*command, "--out", str(out / "bundles"), "--run-dir", str(out / "runs")],
                                  stdout=handle, stderr=subprocess.STDOUT, check=False).returncode
        wall_s = time.monotonic() - started
        manifest = out / "bundles" / train.stem / "manifest.json"
        metrics = json.loads(manifest.read_text())["metrics"] if code == 0 else {}
        rows.append({"bar": name, "command": " ".join(command), "exit": code, "wall_s": round(wall_s, 1),
                     "metrics": metrics})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bar_sets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", required=True, help="folder that receives the CSV files")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the few-shot sample")
    parser.add_argument("--fit", metavar="DIR", help="then run every bar's default fit, bundles and logs in DIR")
    parser.add_argument("--only", nargs="+", default=[], metavar="BAR",
                        help="with --fit: only these bars (voice-commands, clinc150-train, ...)")
    args = parser.parse_args(argv)
    sets = write_bar_sets(Path(args.data), Path(args.out), args.seed)
    for name, path in sets.items():
        print(f"{name}: {path}")
    if args.fit:
        rows = run_bar_fits(sets, Path(args.fit), args.only)
        return max(row["exit"] for row in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
