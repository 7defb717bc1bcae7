"""Writing a bundle folder: its files, then manifest.json with their checksums, verified, then swapped in by renames."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import MANIFEST_FILE, Bundle, Manifest, load_bundle, manifest_json


def check_replaceable(folder: Path, hint: str = "") -> None:
    """Raises ValueError (its message ends with `hint`) where `folder` exists and is not a bundle folder (one
    holding a manifest.json), or is a symbolic link: write_bundle replaces a bundle, never a folder or file of
    anything else, nor a link (which it would replace by a folder, leaving the link's target as it was)."""
    folder = Path(folder)
    if folder.is_symlink():
        raise ValueError(f"{folder} is a symbolic link (to {os.readlink(folder)}): a bundle is written as a folder of "
                         f"its own; write it where the link points, or remove the link{hint}")
    if folder.exists() and not (folder.is_dir() and (folder / MANIFEST_FILE).is_file()):
        kind = "a folder" if folder.is_dir() else "a file"
        raise ValueError(f"{folder} exists and is {kind}, not a bundle (no {MANIFEST_FILE}): a bundle replaces only "
                         f"an earlier bundle{hint}")


def write_bundle(folder: Path, manifest: Manifest, files: Mapping[str, Path | bytes | str]) -> Bundle:
    """Writes a complete bundle at `folder`, replacing any earlier bundle there (`check_replaceable`), and
    returns it loaded.

    `files` maps bundle file names to a path to copy, or bytes/str content; `manifest.files` (the sha256
    of each) is filled in here. The folder is built beside `folder` and loaded back with `load_bundle`
    (parsed and verified) before it is renamed into place, so a bundle the server would refuse is never
    written. One writer at a time in a folder: the next waits, then removes what a writer killed mid-write left.
    """
    folder = Path(folder)
    check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _sole_writer_in(folder.parent):
        _remove_leftovers_of(folder)
        return _write_and_swap_in(folder, manifest, files)


def _write_and_swap_in(folder: Path, manifest: Manifest, files: Mapping[str, Path | bytes | str]) -> Bundle:
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, content in files.items():
            target = staging / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        checksums = {name: sha256_of(staging / name) for name in sorted(files)}
        manifest = dataclasses.replace(manifest, files=checksums)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest_json(manifest), indent=2) + "\n")
        written = load_bundle(staging)
        staging.chmod(0o777 & ~_umask())  # a folder's usual mode: mkdtemp made it 0700
        _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataclasses.replace(written, path=folder)


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _sole_writer_in(parent: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder `parent` while a bundle is written in it (a writer waits for the one
    before); the operating system releases it when the process ends, however it ends."""
    descriptor = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _remove_leftovers_of(folder: Path) -> None:
    """Remove the hidden staging and retired folders that a writer of `folder` killed mid-write left beside it
    (SIGKILL, a power cut): under the lock, no live writer has any."""
    leftover = re.compile(rf"\.{re.escape(folder.name)}\.[a-z0-9_]{{8}}(\.old)?")
    for sibling in folder.parent.iterdir():
        if leftover.fullmatch(sibling.name) and sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling)


def _swap_in(staging: Path, folder: Path) -> None:
    """Rename `staging` to `folder`; an earlier bundle there is renamed aside first and deleted after, so that
    the folder is missing only between two renames (a reload that scanned it then would retire the model until
    the next) and a swap that fails puts the earlier bundle back."""
    if not folder.exists():
        staging.rename(folder)
        return
    retired = staging.with_name(f"{staging.name}.old")
    folder.rename(retired)
    try:
        staging.rename(folder)
    except BaseException:
        retired.rename(folder)
        raise
    shutil.rmtree(retired)
