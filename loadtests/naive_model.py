"""The naive baseline: a bundle's checkpoint run in PyTorch eager, one request at a time, no batching —
what a plain wrapper around the training code does. Only the benchmark uses it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from trm.v1 import trm_pb2

from trainer.data.tokenizer import encode_texts
from trainer.export import torch_model_from_bundle
from trm_bundle.manifest import TextInput
from trm_service.runtime.sudoku import is_solution

TOP_K = 3


@dataclass(frozen=True)
class NaiveStep:
    """One supervision step's answer, as the service would report it."""

    step: int
    answer: trm_pb2.Answer
    halt_confidence: float
    halted: bool  # the halting head fired
    final: bool  # halted, or the last step allowed


class NaiveModel:
    """A bundle's TRM in PyTorch eager; `steps` runs the recursion for one request."""

    def __init__(self, bundle_dir: Path) -> None:
        self.model, self.manifest = torch_model_from_bundle(bundle_dir)
        self.name: str = self.manifest.name
        self.version: str = self.manifest.version
        self.labels: list[str] = list(self.manifest.labels)
        spec = self.manifest.input
        self.tokenizer = Tokenizer.from_file(str(bundle_dir / spec.tokenizer)) if isinstance(spec, TextInput) else None

    def encode(self, request: trm_pb2.ReasonRequest) -> torch.Tensor:
        """int64 [1, seq_len] tokens: tokenized text, or cell ids of the grid (0 = blank)."""
        if self.tokenizer is not None:
            return torch.as_tensor(encode_texts(self.tokenizer, [request.text]))
        cells = [0 if ch in "0." else int(ch) for ch in request.grid.cells]
        return torch.tensor([cells], dtype=torch.int64)

    def decode(self, logits: torch.Tensor, tokens: torch.Tensor) -> trm_pb2.Answer:
        """The answer the logits of one example give: top-k labels, or the grid with its check."""
        probabilities = torch.softmax(logits[0].double(), dim=-1)
        if self.tokenizer is not None:
            top = torch.topk(probabilities, min(TOP_K, len(self.labels)))
            scores = [
                trm_pb2.LabelScore(label=self.labels[i], probability=float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ]
            return trm_pb2.Answer(
                classification=trm_pb2.ClassAnswer(label=scores[0].label, confidence=scores[0].probability, top=scores)
            )
        confidence, index = probabilities.max(dim=-1)
        digits = [int(self.labels[i]) for i in index.tolist()]
        return trm_pb2.Answer(
            grid=trm_pb2.GridAnswer(
                rows=9,
                cols=9,
                cells="".join(map(str, digits)),
                confidence=confidence.tolist(),
                verified=is_solution(tokens[0].tolist(), digits, 9),
            )
        )

    @torch.no_grad()
    def steps(self, request: trm_pb2.ReasonRequest) -> Iterator[NaiveStep]:
        """Run the recursion step by step until the halting head fires (after min_steps) or N_sup."""
        budget = request.budget
        max_steps = budget.max_steps or self.manifest.recursion.N_sup
        min_steps = budget.min_steps or self.manifest.min_steps
        threshold = budget.halt_threshold or self.manifest.halt_threshold
        tokens = self.encode(request)
        y, z = self.model.initial_state(1)
        for step in range(1, max_steps + 1):
            y, z, logits, halt_logit = self.model.step(tokens, y, z)
            confidence = float(torch.sigmoid(halt_logit[0]))
            halted = step >= min_steps and confidence >= threshold
            final = halted or step == max_steps
            yield NaiveStep(step, self.decode(logits, tokens), confidence, halted, final)
            if final:
                return
