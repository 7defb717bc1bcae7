"""Benchmark: CPU time per request of tokenising: the whole text, the prefix that fills max_tokens, and that
prefix with ASCII text tokenised in Python around the library's WordPiece (what the server does).

Each shipped text model's tokenizer on its own test split and on the longest inputs it accepts (20NG test
posts of at least max_chars characters, cut to max_chars), the best of `--repeats` passes each, measured
back to back in one run. A benchmark, not a test.

    python -m loadtests.tokenize_bench
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from tokenizers import Tokenizer

from loadtests.inputs import DEFAULT_MODELS, data_dir, load_inputs, routing_texts
from trm_bundle.manifest import load_bundle
from trm_service.config import DEFAULT_MODELS_DIR
from trm_service.runtime.ascii_tokenizer import AsciiTokenizer
from trm_service.runtime.prefix_tokenizer import PrefixTokenizer
from trm_service.runtime.text_codec import load_tokenizer


def whole_text_ids(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """The ids as the server read them before it cut texts: the whole text tokenised."""
    return np.asarray(tokenizer.encode_batch_fast([text])[0].ids, dtype=np.int64)


def cpu_us_per_text(tokenize: Callable[[str], object], texts: list[str], repeats: int) -> float:
    """Best-of-`repeats` process CPU time per text, in µs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for text in texts:
            tokenize(text)
        best = min(best, time.process_time() - started)
    return best / len(texts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    text_models = [m for m, (kind, _) in DEFAULT_MODELS.items() if kind == "text"]
    inputs = load_inputs(root, text_models)
    posts = routing_texts(root)
    print("| model | texts | count | whole text µs | prefix µs | prefix, ASCII in Python µs | whole / served |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in text_models:
        bundle = load_bundle(DEFAULT_MODELS_DIR / name)
        spec = bundle.manifest.input
        tokenizer = load_tokenizer(bundle.file(spec.tokenizer))
        prefix = PrefixTokenizer(tokenizer, spec.max_tokens, spec.pad_id)
        served = PrefixTokenizer(AsciiTokenizer(tokenizer), spec.max_tokens, spec.pad_id)
        longest = [post[: spec.max_chars] for post in posts if len(post) >= spec.max_chars]
        for label, texts in ((f"{name} test split", inputs[name].samples), (f"{spec.max_chars} characters", longest)):
            whole = cpu_us_per_text(partial(whole_text_ids, tokenizer), texts, args.repeats)
            cut = cpu_us_per_text(prefix.ids, texts, args.repeats)
            fast = cpu_us_per_text(served.ids, texts, args.repeats)
            print(f"| {name} | {label} | {len(texts)} | {whole:.0f} | {cut:.0f} | {fast:.0f} | {whole / fast:.2f}x |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
