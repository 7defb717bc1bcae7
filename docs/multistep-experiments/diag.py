"""Diagnostics on a trained run's EMA weights: per-step train/val accuracy, token-state similarity."""

import sys

import numpy as np
import torch

sys.path.insert(0, "docs/multistep-experiments")
from exp import init_states, trace_of, trim_len
from trainer.pipeline import prepare

from trainer.config import TrainConfig
from trainer.model import TRM, ModelConfig

torch.set_num_threads(1)
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
cfg = TrainConfig.from_dict(ck["config"])
prepared = prepare(cfg)
model = TRM(ModelConfig(**ck["model_config"]))
if len(sys.argv) > 2:
    model.__class__ = __import__("exp").SlotCarryTRM
state = ck["ema"]
extra = {k: v for k, v in state.items() if k in ("y_init", "z_init")}
for k, v in extra.items():
    model.register_buffer(k, v)
model.load_state_dict({k: v for k, v in state.items() if k not in extra})
model.eval()
rng = np.random.default_rng(0)
tr_idx = rng.choice(len(prepared.stream.tokens), 3000, replace=False)
for name, tok, tg in [
    ("train", prepared.stream.tokens[tr_idx], prepared.stream.targets[tr_idx]),
    ("val", prepared.val.tokens, prepared.val.targets),
]:
    tr = trace_of(model, tok)
    print(name, "per-step acc", np.round((tr.predictions == tg).mean(1), 4).tolist())
# similarity of valid token states per step, and answer slot vs previous
tok = torch.as_tensor(prepared.val.tokens[:512])
with torch.no_grad():
    L = trim_len(model, tok)
    tok = tok[:, :L]
    y, z = init_states(model, len(tok), None)
    y, z = y[:, : L + 1], z[:, : L + 1]
    valid = torch.cat([torch.ones(len(tok), 1, dtype=torch.bool), tok != 0], 1)
    x, _ = model.embed(tok)
    prev = None
    for k in range(model.cfg.N_sup):
        y, z, logits, q = model.step(tok, y, z)

        def meancos(s):
            s = torch.nn.functional.normalize(s, dim=-1)
            g = s @ s.transpose(1, 2)
            m = (valid[:, :, None] & valid[:, None, :]).float()
            eye = torch.eye(s.shape[1])[None]
            m = m * (1 - eye)
            return float((g * m).sum() / m.sum())

        xs = torch.nn.functional.cosine_similarity(z[:, 1:], x[:, 1:], dim=-1)[valid[:, 1:]].mean()
        ans = None if prev is None else float(torch.nn.functional.cosine_similarity(y[:, 0], prev, dim=-1).mean())
        prev = y[:, 0].clone()
        print(
            f"step {k + 1}: mean cos between positions z {meancos(z):.3f} y {meancos(y):.3f}; "
            f"cos(z_tok, x_tok) {float(xs):.3f}; cos(answer, prev answer) {ans}"
        )
