"""The teacher's embedding cache lives in the user's cache folder, not the working folder: a fit started from a
read-only folder failed after its baseline ("Read-only file system: '.cache'", naming --out and --run-dir), and
fits from different folders each left a .cache/ behind. A cache that cannot be written is skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
