"""`make models`: retrain the three default bundles from scratch into trm_service/models/.

Runs the same `trm-train fit` as each bundle's REPORT.md records, one after the other, and prints
the wall time of each and of the whole run. Uses CUDA when there is one, else the CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from trainer.cli import main as trm_train

DEFAULT_MODELS = ("intent-clinc150", "routing-20ng", "sudoku")
CONFIGS = Path(__file__).parent / "configs"
MODELS_DIR = Path(__file__).parent.parent / "trm_service" / "models"


def main(names: list[str]) -> int:
    started = time.monotonic()
    for name in names or DEFAULT_MODELS:
        begun = time.monotonic()
        code = trm_train(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--out", str(MODELS_DIR), "--restart"])
        print(f"{name}: exit {code}, {time.monotonic() - begun:.0f} s", flush=True)
        if code:
            return code
    print(f"all models: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
