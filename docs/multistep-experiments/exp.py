"""Multi-step text experiments: carry vs unrolled per-step losses, initial states, loss weights.

Uses the project's own prepare/build_model/Trainer; evaluates on the VALIDATION split only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from trainer.pipeline import OOS_LABEL, build_model, prepare

from trainer import evaluate as ev
from trainer.config import load_config, parse_override
from trainer.model import TRM
from trainer.train import Trainer


def init_states(model, batch, device):
    shape = (batch, *model.cfg.state_shape)
    if hasattr(model, "y_init"):
        return model.y_init.expand(shape), model.z_init.expand(shape)
    return torch.zeros(shape, device=device), torch.zeros(shape, device=device)


class SlotCarryTRM(TRM):
    """Only the slot rows (answer, document) of y and z carry over between steps; token rows restart at zero."""

    def step(self, tokens, y, z):
        rows = 1 + int(self.cfg.doc_slot)
        keep = torch.zeros(y.shape[1], 1, device=y.device)
        keep[:rows] = 1
        return super().step(tokens, y * keep, z * keep)


def trim_len(model, tokens):
    """Longest valid input in the batch, rounded up to the pool (exact for masked attention)."""
    cfg = model.cfg
    valid = tokens != cfg.pad_id
    longest = int(valid.any(0).nonzero().max()) + 1 if valid.any() else 1
    return min(cfg.seq_len, -(-longest // cfg.pool) * cfg.pool)


class ExpTrainer(Trainer):
    def __init__(self, *a, mode="carry", weights="uniform", detach=True, train_halt=True, **kw):
        super().__init__(*a, **kw)
        self.mode, self.weights, self.detach, self.train_halt = mode, weights, detach, train_halt
        self.np_rng = np.random.default_rng(self.cfg.seed + 7)

    def _halt(self, carry, halt_logit):
        if self.train_halt:
            return super()._halt(carry, halt_logit)
        carry.halted = carry.steps >= self.model.cfg.N_sup
        self.depth_ce = None

    def _empty_carry(self):
        carry = super()._empty_carry()
        carry.y, carry.z = (t.detach().clone() for t in init_states(self.model, self.cfg.batch_size, self.device))
        return carry

    def _refill(self, carry):
        slots = carry.halted.nonzero().squeeze(-1)
        super()._refill(carry)
        if slots.numel() and hasattr(self.model, "y_init"):
            y0, z0 = init_states(self.model, int(slots.numel()), self.device)
            carry.y[slots] = y0.detach()
            carry.z[slots] = z0.detach()

    def _step_weights(self, n):
        if self.weights == "uniform":
            w = np.ones(n)
        elif self.weights == "linear":
            w = np.arange(1, n + 1, dtype=float)
        elif self.weights == "last":
            w = np.zeros(n)
            w[-1] = 1
        elif self.weights == "first2":  # heavier first step
            w = np.ones(n)
            w[0] = 2
        else:
            raise ValueError(self.weights)
        return w / w.sum()

    def carry_step(self, carry):
        """The stock carry step, with the batch trimmed to its longest input (exact with masked attention)."""
        self._refill(carry)
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate() * group["lr_scale"]
        L = trim_len(self.model, carry.batch["tokens"])
        rows = L // self.model.cfg.pool + 1 + int(self.model.cfg.doc_slot)
        y, z, logits, halt_logit = self.model.step(
            carry.batch["tokens"][:, :L], carry.y[:, :rows], carry.z[:, :rows]
        )
        loss, stats, _ = self._loss(carry.batch, y, logits, halt_logit)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        carry.y = carry.y.clone()
        carry.z = carry.z.clone()
        carry.y[:, :rows], carry.z[:, :rows] = y.detach().float(), z.detach().float()
        carry.steps = carry.steps + 1
        self._halt(carry, halt_logit.detach())
        halted = carry.halted
        stats["halt_steps"] = float(carry.steps[halted].float().mean()) if halted.any() else float("nan")
        self.step += 1
        return stats

    def train_step(self, carry):
        if self.mode == "carry":
            return self.carry_step(carry)
        cfg, model = self.cfg, self.model
        N = model.cfg.N_sup
        batch = {k: torch.as_tensor(v, device=self.device) for k, v in self.stream.draw(cfg.batch_size).items()}
        batch["tokens"] = batch["tokens"][:, : trim_len(model, batch["tokens"])]
        model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate() * group["lr_scale"]
        y, z = init_states(model, cfg.batch_size, self.device)
        rows = batch["tokens"].shape[1] // model.cfg.pool + 1 + int(model.cfg.doc_slot)
        y, z = y[:, :rows], z[:, :rows]
        if self.mode == "sampled":  # one depth K per batch; loss on step K (and on step 1 with first)
            K = int(self.np_rng.integers(1, N + 1))
            graded = {K} | ({0 + 1} if self.weights == "first" else set())
            w = {k: 1.0 / len(graded) for k in graded}
        else:
            w = dict(enumerate(self._step_weights(N), start=1))
            K = N
        total, ces, accs = 0.0, [], []
        for k in range(1, K + 1):
            if w.get(k, 0.0) == 0.0:
                with torch.no_grad():
                    y, z, logits, halt = model.step(batch["tokens"], y, z)
                continue
            y, z, logits, halt = model.step(batch["tokens"], y, z)
            loss_k, st, _ = self._loss(batch, y, logits, halt)
            total = total + float(w[k]) * loss_k
            ces.append(st["loss"])
            accs.append(st["acc"])
            if self.detach:
                y, z = y.detach(), z.detach()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(model, self.step)
        self.step += 1
        self.depth_ce = ces
        return {
            "loss": float(total.item()),
            "acc": accs[-1],
            "halt_steps": float(K),
            "halt_loss": 0.0,
            "depth_loss": ces,
            "depth_acc": accs,
        }


@torch.no_grad()
def trace_of(model, tokens, bs=512):
    model.eval()
    preds, confs, halts = [], [], []
    N = model.cfg.N_sup
    order = np.argsort((tokens != model.cfg.pad_id).sum(1), kind="stable")
    inverse = np.argsort(order)
    tokens = tokens[order]
    for s in range(0, len(tokens), bs):
        t = torch.as_tensor(tokens[s : s + bs])
        t = t[:, : trim_len(model, t)]
        rows = t.shape[1] // model.cfg.pool + 1 + int(model.cfg.doc_slot)
        y, z = init_states(model, len(t), t.device)
        y, z = y[:, :rows], z[:, :rows]
        p, c, h = [], [], []
        for _ in range(N):
            y, z, logits, q = model.step(t, y, z)
            pr = logits.float().softmax(-1)
            c.append(pr.max(-1).values.numpy())
            p.append(pr.argmax(-1).numpy())
            h.append(q.float().numpy())
        preds.append(np.stack(p))
        confs.append(np.stack(c))
        halts.append(np.stack(h))
    return ev.Trace(
        np.concatenate(preds, 1)[:, inverse],
        np.concatenate(confs, 1)[:, inverse],
        np.concatenate(halts, 1)[:, inverse],
    )


def val_metrics(model, val, oos):
    trace = trace_of(model, val.tokens)
    tg = val.targets
    ins = tg != oos if oos is not None else np.ones(len(tg), bool)
    per_step = (trace.predictions == tg).mean(1)
    per_step_in = (trace.predictions[:, ins] == tg[ins]).mean(1)
    thr = ev.calibrate_halting(trace, tg, tolerance=0.003)
    halting = {}
    for t in ev.HALT_THRESHOLDS:
        stop = ev.halting_steps(trace.halt_logits, t)
        p, _ = trace.at(stop)
        halting[t] = (
            round(float((p == tg).mean()), 4),
            round(float((p[ins] == tg[ins]).mean()), 4),
            round(float((stop + 1).mean()), 3),
        )
    oracle = float((trace.predictions == tg).any(0).mean())
    return {
        "val_step_acc": [round(float(a), 4) for a in per_step],
        "val_step_in_scope": [round(float(a), 4) for a in per_step_in],
        "halt_calibrated": [thr, *halting[thr]],
        "halting": halting,
        "oracle_any_step": round(oracle, 4),
        "mean_q_sigmoid_step1": round(float(ev.sigmoid(trace.halt_logits[0]).mean()), 3),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="trainer/configs/intent-clinc150.yaml")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--mode", default="carry", choices=["carry", "unrolled", "sampled"])
    ap.add_argument("--no-train-halt", action="store_true")
    ap.add_argument("--weights", default="uniform")
    ap.add_argument("--no-detach", action="store_true")
    ap.add_argument("--init", default="zeros", choices=["zeros", "random", "learned"])
    ap.add_argument("--q-bias", type=float, default=None)
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--carry-slots", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = dict(parse_override(s) for s in args.set)
    overrides.setdefault("out_dir", "/tmp/ms/runs")
    overrides["name"] = args.tag
    overrides.setdefault("data", "/work/shared/data/clinc150")
    if args.no_teacher:
        overrides["teacher"] = {}
    cfg = load_config(args.config, overrides)
    t0 = time.monotonic()
    prepared = prepare(cfg)
    model, projection = build_model(cfg, prepared)
    torch.manual_seed(cfg.seed + 1)
    d = model.cfg.hidden_size
    if args.init == "random":
        model.register_buffer("y_init", nn.init.trunc_normal_(torch.empty(d), std=1.0, a=-2, b=2))
        model.register_buffer("z_init", nn.init.trunc_normal_(torch.empty(d), std=1.0, a=-2, b=2))
    elif args.init == "learned":
        model.y_init = nn.Parameter(nn.init.trunc_normal_(torch.empty(d), std=1.0, a=-2, b=2))
        model.z_init = nn.Parameter(nn.init.trunc_normal_(torch.empty(d), std=1.0, a=-2, b=2))
    if args.carry_slots:
        model.__class__ = SlotCarryTRM
    if args.q_bias is not None:
        nn.init.constant_(model.q_head.bias, args.q_bias)
    labels = prepared.labels
    oos = labels.index(OOS_LABEL) if OOS_LABEL in labels else None
    Path("/tmp/ms").mkdir(exist_ok=True)
    log = open(f"/tmp/ms/{args.tag}.jsonl", "w")  # noqa: SIM115 (closed at the end of main)

    def evaluate(m):
        return val_metrics(m, prepared.val, oos)

    trainer = ExpTrainer(
        cfg,
        model,
        prepared.stream,
        evaluate,
        projection,
        mode=args.mode,
        weights=args.weights,
        detach=not args.no_detach,
        train_halt=not args.no_train_halt,
    )
    prep_s = time.monotonic() - t0
    # wrap train_step for loss logging
    orig = trainer.train_step

    def logged(carry):
        st = orig(carry)
        if trainer.step % 50 == 0:
            rec = {
                "step": trainer.step,
                "elapsed_s": round(trainer.elapsed_s, 1),
                "loss": round(st["loss"], 4),
                "acc": round(st["acc"], 3),
                "halt_steps": st["halt_steps"],
            }
            if "depth_loss" in st:
                rec["depth_loss"] = [round(x, 3) for x in st["depth_loss"]]
                rec["depth_acc"] = [round(x, 3) for x in st["depth_acc"]]
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        return st

    trainer.train_step = logged
    trainer.fit(resume=False)
    train_s = trainer.elapsed_s
    t1 = time.monotonic()
    final = val_metrics(trainer.ema.model, prepared.val, oos)
    rec = {
        "final": True,
        "tag": args.tag,
        "args": vars(args),
        "steps": trainer.step,
        "train_s": round(train_s, 1),
        "prep_s": round(prep_s, 1),
        "eval_s": round(time.monotonic() - t1, 1),
        **final,
        "history": trainer.history,
    }
    print(json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    log.close()


if __name__ == "__main__":
    main()
