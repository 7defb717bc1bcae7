"""The sha256 of a bundle's files: computed when a bundle is written, verified when it is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from trm_bundle import BundleError


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(folder: Path, files: dict[str, str]) -> None:
    """Recompute the sha256 of every listed file; raise BundleError on a missing file, one that a symbolic link
    places outside the folder (the bundle would not be what the folder holds), or a mismatch."""
    inside = folder.resolve()
    for name, expected in files.items():
        target = folder / name
        if not target.is_file():
            raise BundleError(f"{folder}: file {name!r} listed in the manifest is missing")
        if not target.resolve().is_relative_to(inside):
            raise BundleError(f"{folder}: file {name!r} is a link to {target.resolve()}, outside the bundle's folder: "
                              "copy the file into the folder")
        actual = sha256_of(target)
        if actual != expected:
            raise BundleError(
                f"{folder}: checksum mismatch for {name!r} (manifest {expected[:12]}…, file {actual[:12]}…); "
                "the bundle is corrupt or was edited after export"
            )
