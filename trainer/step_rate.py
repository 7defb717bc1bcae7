"""Optimizer steps per second of a training config on this machine: the real training step
(`Trainer.train_step`, teachers' losses included) on random batches of the config's shapes.

`python -m trainer.step_rate --config trainer/configs/intent-clinc150.yaml --seconds 60` prints it; the
presets' time sizing (trainer/presets.py) rests on such measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.config import TrainConfig, load_config, parse_override
from trainer.model import TRM, ModelConfig
from trainer.tasks import TextStream
from trainer.teacher import EMBEDDING_DIM as TEACHER_DIM
from trainer.train import Trainer

GRID_CELLS, GRID_SYMBOLS = 81, 10


def random_stream(cfg: TrainConfig, model_cfg: ModelConfig, seed: int) -> TextStream:
    """Endless random batches with every input the config's losses read (soft labels, teacher embeddings)."""
    rng = np.random.default_rng(seed)
    rows = 4096
    tokens = rng.integers(0, model_cfg.vocab_size, size=(rows, model_cfg.seq_len))
    target_shape = (rows,) if cfg.task == "text" else (rows, GRID_CELLS)
    targets = rng.integers(0, model_cfg.num_outputs, size=target_shape)
    soft = teacher = None
    if cfg.task == "text" and cfg.teacher.soft_label_weight:
        soft = rng.dirichlet(np.ones(model_cfg.num_outputs), size=rows).astype(np.float32)
    if cfg.task == "text" and cfg.teacher.embedding_weight:
        teacher = rng.normal(size=(rows, TEACHER_DIM)).astype(np.float32)
        teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    return TextStream(tokens, targets, seed, soft, teacher, cfg.token_dropout)


@dataclass(frozen=True)
class StepRate:
    """Optimizer steps run, their wall time, and the CPU time the process spent (all its threads)."""

    steps: int
    wall_s: float
    cpu_s: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.wall_s

    @property
    def cpu_seconds_per_step(self) -> float:
        """What a step costs whatever else the machine runs: on an idle machine with c cores, at most
        c / cpu_seconds_per_step steps per second."""
        return self.cpu_s / self.steps


def measure_step_rate(cfg: TrainConfig, num_labels: int, seconds: float) -> StepRate:
    """`cfg`'s training steps for about `seconds` on random batches (text: `num_labels` classes,
    `cfg.vocab_size` tokens of `cfg.max_tokens`; grid: 9x9 cells)."""
    if cfg.task == "text":
        model_cfg = ModelConfig(task="text", vocab_size=cfg.vocab_size, seq_len=cfg.max_tokens,
                                num_outputs=num_labels, **cfg.model)
    else:
        model_cfg = ModelConfig(task="grid", vocab_size=GRID_SYMBOLS, seq_len=GRID_CELLS,
                                num_outputs=GRID_SYMBOLS, **cfg.model)
    torch.manual_seed(cfg.seed)
    projection = torch.nn.Linear(model_cfg.hidden_size, TEACHER_DIM) if cfg.teacher.embedding_weight else None
    with tempfile.TemporaryDirectory() as run_dir:
        timed = dataclasses.replace(cfg, out_dir=run_dir, max_steps=10**9, max_minutes=seconds / 60,
                                    checkpoint_every=10**9, log_every=10**9, device="cpu")
        trainer = Trainer(timed, TRM(model_cfg), random_stream(cfg, model_cfg, cfg.seed), None, projection)
        cpu_started = time.process_time()
        trainer.fit(resume=False)
        cpu_s = time.process_time() - cpu_started
    return StepRate(trainer.step, trainer.elapsed_s, cpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.step_rate", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config (see trainer/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--labels", type=int, default=151, help="classes of a text task (default 151)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"name": "step-rate", "data": "", **dict(parse_override(item) for item in args.set)}
    cfg = load_config(Path(args.config), overrides)
    rate = measure_step_rate(cfg, args.labels, args.seconds)
    print(json.dumps({"steps_per_second": round(rate.steps_per_second, 3), "steps": rate.steps,
                      "cpu_seconds_per_step": round(rate.cpu_seconds_per_step, 3),
                      "threads": torch.get_num_threads(),
                      "batch_size": cfg.batch_size, "max_tokens": cfg.max_tokens, "model": cfg.model}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
