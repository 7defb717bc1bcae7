"""Weight soups: models trained from one initialisation with different settings, averaged weight by
weight into one model of the same size (a uniform soup, as in Wortsman et al. 2022, "Model soups").

Each ingredient is the soup's config with a few dotted overrides (token dropout, a teacher, weight
decay, ...). Ingredients keep the seed, so they start from the same weights, and should keep the data
order too: that is what keeps them close enough that their average is a good model rather than a blur.
The average then behaves much like the ensemble of the ingredients at the cost of one model. An
ingredient may change `stream_seed` (its data order), but on routing such ingredients drifted apart
by 8,000 steps and their average lost accuracy (docs/ARCHITECTURE.md). Ingredients that branch from a
shared trunk (`soup_branch_step`) stay close even on different data orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainer.config import TrainConfig, with_overrides

# what ingredients must share: the initialisation, the architecture and the tokenizer they read with
SHARED_KEYS = frozenset(
    {"seed", "soup", "soup_branch_step", "name", "out_dir", "task", "data", "model", "vocab_size", "max_tokens"}
)


def _one_model(cfg: TrainConfig, name: str, overrides: dict[str, Any]) -> TrainConfig:
    """cfg as a single model named `name` (no soup of its own), with dotted overrides, checkpointing
    to its own folder under cfg.run_dir."""
    raw = with_overrides({**cfg.to_dict(), "soup": [], "soup_branch_step": 0}, overrides)
    raw.update(name=name, out_dir=str(cfg.run_dir))
    return TrainConfig.from_dict(raw)


def ingredient_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """One config per `cfg.soup` entry, each checkpointing to its own folder under cfg.run_dir."""
    configs = []
    for index, overrides in enumerate(cfg.soup, start=1):
        shared = sorted(key for key in overrides if key.split(".")[0] in SHARED_KEYS)
        if shared:
            raise ValueError(
                f"soup ingredient {index} overrides {', '.join(shared)}: ingredients are averaged weight by "
                "weight, so they must share the seed, the model and its inputs"
            )
        configs.append(_one_model(cfg, f"{cfg.name}-ingredient-{index}", overrides))
    return configs


def trunk_config(cfg: TrainConfig) -> TrainConfig | None:
    """The shared trunk the ingredients branch from (`soup_branch_step` > 0), or None."""
    return _one_model(cfg, f"{cfg.name}-trunk", {}) if cfg.soup_branch_step else None


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of every floating-point tensor; integer tensors (codes, counters) must be equal."""
    if not states:
        raise ValueError("a soup needs at least one ingredient")
    keys = set(states[0])
    if any(set(state) != keys for state in states):
        raise ValueError("soup ingredients have different parameters; they must share the model")
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(0).to(first.dtype)
        elif all(torch.equal(first, state[key]) for state in states[1:]):
            averaged[key] = first
        else:
            raise ValueError(f"soup ingredients differ in {key}, which cannot be averaged")
    return averaged
