"""Seconds per optimizer step of the real Trainer, back to back, for the shipped configs' sizes."""

import json
import sys
import time

import torch
from trainer.pipeline import build_model, prepare

from trainer.config import load_config
from trainer.train import Trainer

torch.set_num_threads(1)
config, data = sys.argv[1], sys.argv[2]
variants = [
    ("n1 carry", {"model.N_sup": 1}, 24),
    ("N4 sampled slots", {"model.N_sup": 4, "supervision": "sampled", "model.state_carry": "slots"}, 24),
    ("N4 unrolled slots", {"model.N_sup": 4, "supervision": "unrolled", "model.state_carry": "slots"}, 12),
    ("n1 carry again", {"model.N_sup": 1}, 24),
]
base = {
    "data": data,
    "out_dir": "/tmp/ms/timing",
    "soup": [],
    "soup_branch_step": 0,
    **({"teacher": {}} if len(sys.argv) > 3 else {}),
}
prepared = None
for name, over, steps in variants:
    cfg = load_config(config, {**base, **over})
    if prepared is None:
        prepared = prepare(cfg)
        original = prepared.model_cfg
    prepared.model_cfg = type(original)(
        **{**original.to_dict(), **{k.split(".")[1]: v for k, v in over.items() if k.startswith("model.")}}
    )
    model, proj = build_model(cfg, prepared)
    tr = Trainer(cfg, model, prepared.stream, None, proj)
    carry = tr._empty_carry() if cfg.supervision == "carry" else None
    tr.train_step(carry)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        tr.train_step(carry)
    print(json.dumps({"variant": name, "s_per_step": round((time.perf_counter() - t) / steps, 3)}), flush=True)
