"""Requests to a sequence model (task "sequence"): text in as character ids, text out token by token."""

from __future__ import annotations

import numpy as np
from trm.v1 import trm_pb2

from trm_bundle.manifest import BundleError, CharacterInput, Manifest
from trm_bundle.probabilities import softmax
from trm_bundle.spoken_numbers import SPOKEN_NUMBERS, numbers_agree
from trm_bundle.spoken_words import SPOKEN_WORDS, as_spoken_words
from trm_service.runtime.codec import (
    DEFAULT_TOP_K,
    DecodedStep,
    EncodedRequest,
    InputError,
    emptiness,
    top_scores,
)
from trm_service.scheduler.ticket import StepResult


class SequenceCodec:
    """Checks ReasonRequest.text against the model's vocabulary (`labels`, one character each) and length."""

    def __init__(self, manifest: Manifest) -> None:
        spec, output = manifest.input, manifest.sequence
        if not isinstance(spec, CharacterInput) or output is None:
            raise BundleError(f"model {manifest.name!r} is not a sequence model")
        self._name, self._spec, self._labels = manifest.name, spec, manifest.labels
        specials = {spec.pad_id, output.bos_id, output.eos_id}
        self._ids = {label: index for index, label in enumerate(manifest.labels)
                     if index not in specials and len(label) == 1}
        self._eos_id, self._unsure_below = output.eos_id, output.unsure_below
        self._checks_numbers = SPOKEN_NUMBERS in output.checks

    def read(self, given: str) -> str:
        """The text the model reads for `given` (InputError where it reads none): non-blank, of at most max_chars
        characters as given, read as the bundle says (`input.normalize`: as spoken words, or as given), each
        character in the model's vocabulary. `trm-train eval` reads a file's sources with it too."""
        if not given.strip():
            raise InputError(f"text is {emptiness(given)}: send the words to write out in ReasonRequest.text")
        if len(given) > self._spec.max_chars:
            raise InputError(f"text has {len(given)} characters; model {self._name!r} accepts at most "
                             f"{self._spec.max_chars} (ModelInfo.limits.max_text_chars)")
        text = given
        if self._spec.normalize == SPOKEN_WORDS:
            text = as_spoken_words(given)
            if not text:
                raise InputError(f"text {given!r} holds no words once read as spoken words (without "
                                 "punctuation and leading fillers): send the words to write out")
        unknown = dict.fromkeys(char for char in text if char not in self._ids)  # in the text's order, once each
        if unknown:
            raise InputError(f"text has characters model {self._name!r} does not read: "
                             f"{''.join(unknown)!r}; it reads printable ASCII (ModelInfo.labels)")
        return text

    def encode(self, request: trm_pb2.ReasonRequest) -> EncodedRequest:
        """Non-blank text of at most max_chars characters, each in the model's vocabulary once read as the bundle
        says (`input.normalize`: as spoken words, or as given); top_k within it."""
        kind = request.WhichOneof("input")
        if kind != "text":
            raise InputError(f"model {self._name!r} writes text from text: set ReasonRequest.text"
                             + ("" if kind is None else ", not grid"))
        text = self.read(request.text)
        top_k = request.top_k or DEFAULT_TOP_K
        if top_k > len(self._labels):
            raise InputError(f"top_k must be at most {len(self._labels)} (the vocabulary of {self._name!r}), "
                             f"got {top_k}")
        tokens = np.array([self._ids[char] for char in text], dtype=np.int64)
        reader = SequenceReader(self._labels, self._eos_id, top_k, self._unsure_below,
                                spoken=text if self._checks_numbers else None)
        return EncodedRequest(tokens=tokens, reader=reader, logged_input=text)


class SequenceReader:
    """Reads a sequence step: the text emitted so far with its confidence (unsure below `unsure_below`), and the
    refined token's top candidates. The text is every emitted token but the end mark (the session's step never
    chooses the padding or start mark: SequenceSession.step). Given the `spoken` words, a finished text is also
    checked against the numbers they say (trm_bundle.spoken_numbers); one that fails is unsure too."""

    def __init__(self, labels: tuple[str, ...], eos_id: int, top_k: int, unsure_below: float,
                 spoken: str | None = None) -> None:
        self._labels, self._eos_id, self._top_k, self._unsure_below = labels, eos_id, top_k, unsure_below
        self._spoken = spoken

    def read(self, result: StepResult) -> DecodedStep:
        progress = result.progress
        if progress is None:
            raise ValueError("a sequence model's step result carries its progress")
        probabilities = softmax(result.logits)  # of log-probabilities: the distribution itself, renormalised
        tokens = len(progress.emitted)
        text = "".join(self._labels[token] for token in progress.emitted if token != self._eos_id)
        finished = progress.emitted[-1:] == (self._eos_id,)
        numbers_disagree = finished and self._spoken is not None and not numbers_agree(self._spoken, text)
        answer = trm_pb2.TextAnswer(
            text=text,
            token_index=progress.token_index,
            token_step=progress.token_step,
            candidates=top_scores(self._labels, probabilities, self._top_k),
            token_emitted=progress.token_emitted,
            tokens=tokens,
            mean_steps_per_token=progress.emitted_steps / tokens if tokens else 0.0,
            confidence=progress.confidence,
            unsure=progress.confidence < self._unsure_below or numbers_disagree,
            numbers_disagree=numbers_disagree,
        )
        return DecodedStep(answer=trm_pb2.Answer(text=answer), probabilities=probabilities.astype(np.float32),
                           unit=progress.token_index)
