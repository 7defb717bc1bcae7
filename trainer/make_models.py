"""`make models`: retrain the four default bundles from scratch into trm_service/models/.

Runs `trm-train fit` for each classification and grid model, one after the other, then
`python -m trainer.dictation.fit` for code-dictation (its own trainer: a sequence model on the standard
library; three runs, each continuing the one before), and prints the wall time of each and of the whole run.
Uses CUDA when there is one, else the CPU, where a model with a CPU-sized config (`<name>-cpu.yaml`, Sudoku)
trains with that one instead.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

from trainer.cli import main as trm_train
from trainer.dictation.fit import main as dictation_fit

DEFAULT_MODELS = ("intent-clinc150", "routing-20ng", "sudoku", "code-dictation")
DICTATION = "code-dictation"
# the shipped bundle's later runs, each from the run before's weights: (more steps, its flags)
DICTATION_CONTINUATIONS = (
    (1000, ("--minutes", "0", "--short-name-share", "0.03")),  # short names said alone (1.3.0)
    (2000, ("--minutes", "0", "--short-name-share", "0.03", "--train-max-chars", "120")),  # longer lines (1.4.0)
)
CONFIGS = Path(__file__).parent / "configs"
MODELS_DIR = Path(__file__).parent.parent / "trm_service" / "models"


def config_path(name: str, cuda: bool) -> Path:
    """A model's config: `<name>-cpu.yaml` where one exists and there is no GPU, else `<name>.yaml`."""
    cpu_variant = CONFIGS / f"{name}-cpu.yaml"
    return cpu_variant if not cuda and cpu_variant.exists() else CONFIGS / f"{name}.yaml"


def train_dictation(runs: Path, bundle_dir: Path) -> None:
    """code-dictation's recipe: a run with trainer.dictation.fit's defaults, then each of DICTATION_CONTINUATIONS
    from the checkpoint of the run before (`--continue-from`); the last writes the bundle."""
    run_dirs = [runs / f"{DICTATION}-base", *(runs / f"{DICTATION}-{index}"
                                             for index in range(1, len(DICTATION_CONTINUATIONS))), runs / DICTATION]
    for run_dir in run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{DICTATION}: training with trainer.dictation.fit (its defaults), then " + "; then ".join(
        f"{more} steps more with {' '.join(flags)}" for more, flags in DICTATION_CONTINUATIONS), flush=True)
    steps = dictation_fit(["--run-dir", str(run_dirs[0])])["training"]["steps"]
    for index, (more, flags) in enumerate(DICTATION_CONTINUATIONS, start=1):
        last = index == len(DICTATION_CONTINUATIONS)
        steps = dictation_fit(["--run-dir", str(run_dirs[index]), "--continue-from", str(run_dirs[index - 1]),
                               "--max-steps", str(steps + more), *flags,
                               *(["--bundle-dir", str(bundle_dir)] if last else [])])["training"]["steps"]


def main(names: list[str]) -> int:
    started = time.monotonic()
    cuda = torch.cuda.is_available()
    for name in names or DEFAULT_MODELS:
        begun = time.monotonic()
        if name == DICTATION:
            train_dictation(Path("runs"), MODELS_DIR / name)
            code = 0
        else:
            config = config_path(name, cuda)
            print(f"{name}: training with {config}", flush=True)
            code = trm_train(["fit", "--config", str(config), "--out", str(MODELS_DIR), "--restart"])
        print(f"{name}: exit {code}, {time.monotonic() - begun:.0f} s", flush=True)
        if code:
            return code
    print(f"all models: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
