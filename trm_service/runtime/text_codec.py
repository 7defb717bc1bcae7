"""The codec of text classifiers: text to the bundle tokenizer's ids, class logits to top-k labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from trm.v1 import trm_pb2

from trm_bundle.manifest import BundleError, Manifest, OutOfScope, TextInput
from trm_bundle.probabilities import softmax
from trm_service.runtime.ascii_tokenizer import AsciiTokenizer
from trm_service.runtime.codec import (
    DEFAULT_TOP_K,
    DecodedStep,
    EncodedRequest,
    InputError,
    emptiness,
    top_scores,
)
from trm_service.runtime.prefix_tokenizer import PrefixTokenizer
from trm_service.scheduler.ticket import StepResult


def load_tokenizer(path: Path) -> Tokenizer:
    """A bundle's tokenizer.json; BundleError when it is not a tokenizers file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
        raise BundleError(f"{path}: not a readable tokenizers file: {exc}") from exc


class TextCodec:
    """Checks and tokenises ReasonRequest.text; reads class logits with the request's top_k."""

    def __init__(self, tokenizer: Tokenizer, manifest: Manifest) -> None:
        spec = manifest.input
        if not isinstance(spec, TextInput):
            raise BundleError(f"model {manifest.name!r} does not take text")
        short, long = (tokenizer.encode(probe).ids for probe in ("a", "word " * (2 * spec.max_tokens)))
        for produced in (len(short), len(long)):
            if produced != spec.max_tokens:
                raise BundleError(
                    f"{spec.tokenizer}: must pad and truncate to input.max_tokens={spec.max_tokens} "
                    f"(it produced {produced} ids)"
                )
        padded_with = short[-1]
        if padded_with != spec.pad_id:
            raise BundleError(f"{spec.tokenizer}: pads with id {padded_with}, but input.pad_id is {spec.pad_id}")
        self._tokenizer = PrefixTokenizer(AsciiTokenizer(tokenizer), spec.max_tokens, spec.pad_id)
        # Padding and special tokens carry none of the text; the unknown token stands for a word.
        special = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        filler_ids = sorted((special | {spec.pad_id}) - {_unknown_id(tokenizer)})
        self.largest_id = max(tokenizer.get_vocab(with_added_tokens=True).values())  # the loader: the step reads it
        self._is_filler = np.zeros(max(self.largest_id, *filler_ids) + 1, dtype=bool)  # by token id
        self._is_filler[filler_ids] = True
        self._filler_names = ", ".join(token for i in filler_ids if (token := tokenizer.id_to_token(i)))
        self._spec = spec
        self._name = manifest.name
        self._labels = manifest.labels
        self._out_of_scope = manifest.out_of_scope

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids of `text`, exactly max_tokens long (padded and truncated by the tokenizer), int64."""
        return self._tokenizer.ids(text)

    def encode(self, request: trm_pb2.ReasonRequest) -> EncodedRequest:
        """Non-blank text that leaves a token after normalisation, and a top_k within the label count. A text
        longer than max_chars characters is read when the max_tokens tokens the model reads all lie within its
        first max_chars (its answer is then the whole text's); otherwise it is refused."""
        kind = request.WhichOneof("input")
        if kind is None:
            raise InputError(f"the request has no input: model {self._name!r} takes a text (ReasonRequest.text)")
        if kind != "text":
            raise InputError(f"model {self._name!r} classifies text: set ReasonRequest.text, not grid")
        text = request.text
        if not text.strip():
            raise InputError(f"text is {emptiness(text)}: send the text to classify in ReasonRequest.text")
        tokens = self.tokenize(text) if len(text) <= self._spec.max_chars else self._long_text_ids(text)
        self._check_tokens(tokens)
        reader = ClassificationReader(self._labels, self._out_of_scope, self._top_k(request.top_k))
        return EncodedRequest(tokens=tokens, reader=reader, logged_input=text)

    def _long_text_ids(self, text: str) -> np.ndarray:
        """The ids of a text longer than max_chars, when its first max_chars characters hold all the model reads."""
        limit, tokens = self._spec.max_chars, self._spec.max_tokens
        ids = self._tokenizer.ids_within(text, limit)
        if ids is not None:
            return ids
        if self._tokenizer.reads_prefixes:
            raise InputError(
                f"text has {len(text)} characters, and its first {limit} (ModelInfo.limits.max_text_chars) do not "
                f"hold the {tokens} tokens model {self._name!r} reads (ModelInfo.limits.max_tokens): send at most "
                f"{limit} characters"
            )
        raise InputError(
            f"text has {len(text)} characters; model {self._name!r} accepts at most {limit} "
            "(ModelInfo.limits.max_text_chars)"
        )

    def _check_tokens(self, tokens: np.ndarray) -> None:
        """Refuse text that leaves no token after the tokenizer's normalisation (control and zero-width
        characters, U+FFFD, accents...): the model would see exactly the empty text. Words outside the vocabulary
        count: the model reads them as the unknown token, and judging such text is its job."""
        if self._is_filler[tokens].all():
            raise InputError(
                f"text leaves no tokens after normalisation: the tokenizer of model {self._name!r} drops "
                "control characters, zero-width characters, U+FFFD and accents, and reads its own markers "
                f"({self._filler_names}) as no word; nothing else is left: send the text to classify in "
                "ReasonRequest.text"
            )

    def _top_k(self, top_k: int) -> int:
        """top_k as asked (default 3), at most the label count."""
        labels = len(self._labels)
        if top_k > labels:
            raise InputError(
                f"top_k must be at most {labels} (the number of labels of {self._name!r}), got {top_k}"
            )
        return top_k or min(DEFAULT_TOP_K, labels)


def _unknown_id(tokenizer: Tokenizer) -> int | None:
    """The id the tokenizer gives words outside its vocabulary, if its model has one."""
    unknown = getattr(tokenizer.model, "unk_token", None)
    return None if unknown is None else tokenizer.token_to_id(unknown)


class ClassificationReader:
    """Reads class logits [num_labels] as top-k labels with probabilities and an out-of-scope flag."""

    def __init__(self, labels: tuple[str, ...], out_of_scope: OutOfScope | None, top_k: int) -> None:
        self._labels = labels
        self._out_of_scope = out_of_scope
        self._top_k = top_k

    def read(self, result: StepResult) -> DecodedStep:
        """Decode one request's step."""
        probabilities = softmax(result.logits)
        top = top_scores(self._labels, probabilities, self._top_k)
        best = top[0]
        out_of_scope = self._out_of_scope is not None and (
            best.label == self._out_of_scope.label or best.probability < self._out_of_scope.threshold
        )
        answer = trm_pb2.ClassAnswer(
            label=best.label, confidence=best.probability, top=top, out_of_scope=out_of_scope
        )
        return DecodedStep(answer=trm_pb2.Answer(classification=answer), probabilities=probabilities)
