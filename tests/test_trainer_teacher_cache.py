"""The teacher's embedding cache lives in the user's cache folder, not the working folder: a fit started from a
read-only folder failed after its baseline ("Read-only file system: '.cache'", naming --out and --run-dir), and
fits from different folders each left a .cache/ behind. A cache that cannot be written is skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer import teacher

pytestmark = pytest.mark.skipif(not teacher.available(), reason="needs the teacher package (make install)")

EMBED = ("import json, sys; from trainer.teacher import embed_texts; "
         "print(json.dumps(embed_texts(['open the file', 'close it']).round(3).tolist()))")


def _embed_from_an_unwritable_folder(cache_home: Path) -> list:
    env = os.environ | {"XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", EMBED], cwd="/proc", env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # /proc: no folder can be made there, even by root
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_cache_is_kept_in_the_users_cache_folder_and_used_again(tmp_path: Path) -> None:
    first = _embed_from_an_unwritable_folder(tmp_path)
    cached = list((tmp_path / "trm-coprocessor" / "teacher").glob("*.npy"))
    assert len(cached) == 1 and len(first) == 2 and len(first[0]) == 384
    assert _embed_from_an_unwritable_folder(tmp_path) == first


def test_a_cache_folder_that_cannot_be_written_is_skipped() -> None:
    assert len(_embed_from_an_unwritable_folder(Path("/proc/no-cache"))) == 2


@pytest.mark.parametrize("damage", ["cut short", "another array"])
def test_a_damaged_cache_entry_is_computed_again_and_replaced(tmp_path: Path, damage: str) -> None:
    """Probe: a cache entry cut short failed every fit of its data ("EOF: reading array header, expected 118 bytes got
    90"), and another array planted there "Found input variables with inconsistent numbers of samples"."""
    first = _embed_from_an_unwritable_folder(tmp_path)
    (entry,) = (tmp_path / "trm-coprocessor" / "teacher").glob("*.npy")
    if damage == "cut short":
        entry.write_bytes(entry.read_bytes()[:90])
    else:
        np.save(entry, np.zeros((10, 384), dtype=np.float16))
    assert _embed_from_an_unwritable_folder(tmp_path) == first
    assert np.load(entry).shape == (2, 384)  # replaced


def test_the_cache_keeps_its_most_recently_used_entries_within_its_limit(tmp_path: Path, monkeypatch) -> None:
    """The cache grew without bound (72 MB for each file of 94,176 sentences fitted): past its limit the least
    recently used entries go, never the one just written; a hit counts as a use."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = teacher.cache_folder()
    folder.mkdir(parents=True)
    texts = ["open the file", "close it"]
    used = teacher.cache_entry(texts)
    np.save(used, np.ones((2, teacher.EMBEDDING_DIM), dtype=np.float16))
    others = [folder / f"{index:024d}.npy" for index in range(4)]
    for age, entry in enumerate(others):
        entry.write_bytes(b"x" * 1000)
        os.utime(entry, (1_000_000 + age, 1_000_000 + age))
    os.utime(used, (0, 0))  # the oldest, until the hit below touches it
    assert teacher.embed_texts(texts).shape == (2, teacher.EMBEDDING_DIM)  # a hit: no teacher loaded
    monkeypatch.setattr(teacher, "CACHE_LIMIT_BYTES", used.stat().st_size + 2 * 1000)  # it and two others
    writing = used.with_suffix(".123.tmp.npy")  # another fit's file being written: not an entry
    writing.write_bytes(b"x" * 5000)
    teacher.prune_cache(folder, keep=others[0])
    assert [entry.exists() for entry in others] == [True, False, False, True]  # the kept one, the newest one
    assert used.exists() and writing.exists()
