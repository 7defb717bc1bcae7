"""Writing a bundle folder: its files, then manifest.json with their checksums, swapped in atomically."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import MANIFEST_FILE, Bundle, Manifest, load_bundle, manifest_json


def write_bundle(folder: Path, manifest: Manifest, files: Mapping[str, Path | bytes | str]) -> Bundle:
    """Writes a complete bundle at `folder`, replacing any earlier one, and returns it loaded.

    `files` maps bundle file names to a path to copy, or bytes/str content; `manifest.files` (the sha256
    of each) is filled in here. The folder is built beside `folder` and loaded back with `load_bundle`
    (parsed and verified) before it is renamed into place, so a bundle the server would refuse is never
    written.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
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
        if folder.exists():
            shutil.rmtree(folder)
        staging.chmod(0o755)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataclasses.replace(written, path=folder)
