"""The hosted models: every bundle folder found in the model directories, by name and version.

`reload()` (startup, SIGHUP) rescans the folders. A new or changed folder is loaded in a thread
while the current models keep serving; once it verifies, it takes new requests, and the version
it replaces finishes its running requests before its scheduler stops. A folder that fails to
verify is refused with a log line, and whatever was serving from it before keeps serving; the files of
an unchanged folder are verified again, so that a file changed under its old manifest is refused too. A model
directory that is gone or holds no bundle folder at a reload (an unmounted volume: its mount point
stays behind, empty) keeps the models found in it serving; a bundle folder removed from a directory
that still holds others is retired (a directory's last models retire with a restart).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from trm_bundle.checksums import sha256_of, verify_files
from trm_bundle.manifest import MANIFEST_FILE, BundleError, Manifest
from trm_service.api.halt_reasons import FLAG_OF_TASK, HALT_REASON_NAMES
from trm_service.caller_strings import listed_names, quote
from trm_service.observability.metrics import ServiceMetrics
from trm_service.runtime.loader import LoadedModel, LoadOptions, load_model
from trm_service.scheduler.model_scheduler import ModelScheduler
from trm_service.scheduler.sequence_scheduler import SequenceScheduler

_log = structlog.get_logger("trm_service.registry")


@dataclass(frozen=True)
class SchedulerLimits:
    """Per model version: requests in one step batch, requests waiting behind it, and the most rows
    one ONNX Runtime call runs (a step's batch runs as several calls above that)."""

    max_batch: int
    max_queue: int
    max_rows_per_run: int
    load_wait_s: float | None = None  # the load-adaptive step cap's wait bound; None: off


@dataclass(eq=False)
class HostedModel:
    """A loaded model version and the scheduler that runs its requests."""

    loaded: LoadedModel
    scheduler: ModelScheduler
    found_in: Path  # the model directory (as configured) whose scan found it

    @property
    def manifest(self) -> Manifest:
        return self.loaded.bundle.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def path(self) -> Path:
        return self.loaded.bundle.path


@dataclass
class ReloadSummary:
    """What a reload did, for logs and tests."""

    loaded: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # no longer served
    replaced: list[str] = field(default_factory=list)  # an old copy drains while a new one of its version serves


class ModelNotFound(LookupError):
    """No hosted model (or version) matches a request."""


_VersionParts = tuple[tuple[int, int | str], ...]


def version_key(version: str) -> tuple[_VersionParts, int, _VersionParts, _VersionParts, str]:
    """Sort key for versions, as semantic versioning orders them: numeric parts compare as numbers ("1.10.0" >
    "1.9.0"), a pre-release comes before its release ("1.0.0-rc1" < "1.0.0"), build metadata ("+b2") last. A
    leading "v" before a digit, as tags often write it, is not read ("v1.1" is 1.1, before 1.9.0), and missing
    parts are 0 ("2" is 2.0.0, after "2.0.0-rc1"). A word where a release's number goes ("dev", "latest") comes
    before every number: read after them, it stayed the default whatever numbered version came after it.
    Versions that read the same ("2", "2.0", "v2") are ordered as strings."""
    core, _, build = re.sub(r"^[vV](?=\d)", "", version).partition("+")
    release, dash, pre_release = core.partition("-")
    release_parts = _version_parts(release, words_first=True)
    while release_parts[-1:] == ((1, 0),):  # trailing zeros: "2" reads as "2.0.0"
        release_parts = release_parts[:-1]
    return (release_parts, 0 if dash else 1, _version_parts(pre_release), _version_parts(build), version)


def _version_parts(text: str, *, words_first: bool = False) -> _VersionParts:
    word_rank = 0 if words_first else 2
    return tuple((1, int(p)) if p.isdigit() else (word_rank, p) for p in re.split(r"[.-]", text) if p)


@dataclass(frozen=True)
class BundleScan:
    """What the model directories hold now."""

    bundles: dict[Path, Path]  # each bundle folder (resolved, once) -> the model directory that holds it
    without_bundles: list[Path]  # model directories that are gone or hold no bundle folder
    too_deep: list[Path]  # subfolders of a model directory that hold bundle folders themselves (not served)
    incomplete: dict[Path, str]  # subfolders that look like bundle folders but hold no manifest -> why not served


def discover_bundles(directories: Sequence[Path]) -> BundleScan:
    """Bundle folders: a directory holding a manifest, else its non-hidden subfolders that hold one. A subfolder
    that holds bundle folders itself (`trm-train fit --out bundles/v2` writes `bundles/v2/NAME/`) is not searched,
    but named in `too_deep`."""
    found: dict[Path, Path] = {}
    without_bundles: list[Path] = []
    too_deep: list[Path] = []
    incomplete: dict[Path, str] = {}
    for directory in directories:
        if (directory / MANIFEST_FILE).is_file():
            found.setdefault(directory.resolve(), directory)
            continue
        children = _subfolders(directory) if directory.is_dir() else []
        bundles = [c for c in children if (c / MANIFEST_FILE).is_file()]
        if not bundles:
            without_bundles.append(directory)
        for child in bundles:
            found.setdefault(child.resolve(), directory)
        for child in children:
            if child not in bundles and _holds_bundles(child):
                too_deep.append(child)
            elif child not in bundles and (missing := _missing_manifest(child)):
                incomplete[child] = missing
    return BundleScan(found, without_bundles, too_deep, incomplete)


def _subfolders(folder: Path) -> list[Path]:
    """The non-hidden subfolders of `folder`, sorted."""
    return [c for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")]


def _holds_bundles(folder: Path) -> bool:
    try:
        return any((c / MANIFEST_FILE).is_file() for c in _subfolders(folder))
    except OSError:  # unreadable: not ours to search
        return False


def _missing_manifest(folder: Path) -> str | None:
    """Why a folder that holds a model graph, or a manifest under another case, is no bundle folder (None for a
    folder of other files)."""
    try:
        names = [f.name for f in folder.iterdir()]
    except OSError:  # unreadable: not ours to search
        return None
    misnamed = next((name for name in names if name.lower() == MANIFEST_FILE), None)
    if misnamed is not None:
        return f"its manifest is named {misnamed}: a bundle's manifest is {MANIFEST_FILE}, in lower case"
    if any(name.endswith(".onnx") for name in names):
        return f"it holds a model graph but no {MANIFEST_FILE}: copy the whole bundle folder"
    return None


def _manifest_digest(path: Path) -> str | None:
    try:
        return sha256_of(path / MANIFEST_FILE)  # in chunks: a manifest over its bounds is refused by the load
    except OSError:
        return None


class ModelRegistry:
    """Loads, looks up and retires hosted model versions."""

    def __init__(
        self,
        directories: Sequence[Path],
        options: LoadOptions,
        limits: SchedulerLimits,
        metrics: ServiceMetrics,
    ) -> None:
        self._directories = list(dict.fromkeys(Path(os.path.abspath(d)) for d in directories))  # symlinks kept
        self._options = options
        self._limits = limits
        self._metrics = metrics
        self._hosted: list[HostedModel] = []  # by name, newest version first (see _set_hosted)
        self._by_name: dict[str, list[HostedModel]] = {}
        self._retiring: dict[asyncio.Task[None], HostedModel] = {}  # versions draining after a reload or close
        self._lock = asyncio.Lock()
        self._shutdown_at: float | None = None

    def models(self) -> list[HostedModel]:
        """Every hosted version, by name, newest version first."""
        return list(self._hosted)

    def names(self) -> set[str]:
        """Names of the hosted models."""
        return set(self._by_name)

    def versions(self, name: str) -> list[str]:
        """Hosted versions of `name`, newest first."""
        return [m.version for m in self._by_name.get(name, ())]

    def resolve(self, name: str, version: str = "") -> HostedModel:
        """The named model at `version` (empty: newest); raise ModelNotFound with what is available."""
        candidates = self._by_name.get(name)
        if not candidates:
            raise ModelNotFound(f"model {quote(name)} is not hosted here; available models: "
                                f"{listed_names(self._by_name, name)}")
        if not version:
            return candidates[0]
        for model in candidates:
            if model.version == version:
                return model
        loaded = ", ".join(m.version for m in candidates)
        raise ModelNotFound(f"model {quote(name)} has no version {quote(version)}; loaded versions: {loaded}")

    async def reload(self) -> ReloadSummary:
        """Rescan the model directories; load new or changed bundles, retire removed or replaced ones."""
        async with self._lock:
            summary = ReloadSummary()
            current = {m.path: m for m in self._hosted}
            kept: list[HostedModel] = []
            fresh: list[tuple[LoadedModel, Path]] = []  # with the directory that holds it
            scan = discover_bundles(self._directories)
            for folder in scan.too_deep:
                _log.warning("bundles_not_served", path=str(folder), reason="bundle folders one level too deep: "
                             f"serve them with --models-dir {folder}, or move them up a level")
            for folder, reason in scan.incomplete.items():
                _log.warning("bundles_not_served", path=str(folder), reason=reason)
            for directory in scan.without_bundles:
                unreachable = [m for m in self._hosted if m.found_in == directory and m.path not in scan.bundles]
                kept.extend(unreachable)
                _log.warning("models_dir_missing" if not directory.is_dir() else "models_dir_empty",
                             path=str(directory), kept=[f"{m.name}@{m.version}" for m in unreachable])
            for path, found_in in scan.bundles.items():
                model = current.get(path)
                try:
                    if model is not None and _manifest_digest(path) == model.loaded.bundle.manifest_sha256:
                        # unchanged: its files checked again (a bad copy under the old manifest is refused too)
                        await asyncio.to_thread(verify_files, path, model.manifest.files)
                        kept.append(model)
                    else:
                        fresh.append((await asyncio.to_thread(load_model, path, self._options), found_in))
                except Exception as exc:  # whatever a folder holds, that folder alone is refused
                    summary.refused.append(str(path))
                    error = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
                    _log.error("bundle_refused", path=str(path), error=error)
                    _keep_previous(kept, model, path)
            hosted = list(kept)
            for loaded, found_in in fresh:
                manifest, path = loaded.bundle.manifest, loaded.bundle.path
                key = (manifest.name, manifest.version)
                clash = next((m for m in hosted if (m.name, m.version) == key), None)
                if clash is not None:
                    summary.refused.append(str(path))
                    _log.error(
                        "bundle_refused", path=str(path),
                        error=f"{manifest.name} {manifest.version} is already served from {clash.path}",
                    )
                    _keep_previous(hosted, current.get(path), path)
                    continue
                hosted.append(self._host(loaded, found_in))
                summary.loaded.append(f"{manifest.name}@{manifest.version}")
            gone = [m for m in self._hosted if m not in hosted]
            self._set_hosted(hosted)
            self._metrics.bundles_refused.set(len(summary.refused))
            if not hosted:
                _log.error("no_models_hosted", directories=[str(d) for d in self._directories],
                           hint="health reports NOT_SERVING until a reload (SIGHUP) loads a bundle")
            served = {(m.name, m.version) for m in hosted}
            for model in gone:
                key = (model.name, model.version)
                (summary.replaced if key in served else summary.retired).append(f"{model.name}@{model.version}")
                self._retire(model)
            hosted_names = [f"{m.name}@{m.version}" for m in self.models()]
            _log.info("models_reloaded", hosted=hosted_names, **vars(summary))
            return summary

    def _set_hosted(self, hosted: list[HostedModel]) -> None:
        """Replace the hosted versions, ordered (by name, newest first) and indexed by name once here
        so that the per-request lookup does no sorting."""
        newest_first = sorted(hosted, key=lambda m: version_key(m.version), reverse=True)
        self._hosted = sorted(newest_first, key=lambda m: m.name)
        self._by_name = {}
        for model in self._hosted:
            self._by_name.setdefault(model.name, []).append(model)

    def shutdown_by(self, at: float) -> None:
        """Make every scheduler, hosted or still draining, stop its requests (anytime answers) before
        time.monotonic() reaches `at`."""
        self._shutdown_at = at
        for model in [*self._hosted, *self._retiring.values()]:
            model.scheduler.shutdown_by(at)

    async def close(self) -> None:
        """Stop every scheduler after its submitted requests finished."""
        hosted = self._hosted
        self._set_hosted([])
        for model in hosted:
            self._retire(model)
        if self._retiring:
            await asyncio.gather(*self._retiring)

    def _host(self, loaded: LoadedModel, found_in: Path) -> HostedModel:
        manifest = loaded.bundle.manifest
        scheduler_type = SequenceScheduler if manifest.task == "sequence" else ModelScheduler
        scheduler = scheduler_type(
            manifest.name,
            manifest.version,
            loaded.session,
            max_batch=self._limits.max_batch,
            max_queue=self._limits.max_queue,
            max_rows_per_run=self._limits.max_rows_per_run,
            metrics=self._metrics,
            initial_step_s=loaded.warm_step_s,
            load_wait_s=self._limits.load_wait_s,
            lanes=loaded.lanes,
        )
        scheduler.start()
        if self._shutdown_at is not None:
            scheduler.shutdown_by(self._shutdown_at)
        self._metrics.model_info.labels(manifest.name, manifest.version, manifest.task).set(1)
        self._metrics.start_series_of(manifest.name, FLAG_OF_TASK[manifest.task], HALT_REASON_NAMES)
        _log.info(
            "bundle_loaded", model=manifest.name, version=manifest.version, path=str(loaded.bundle.path),
            onnx=loaded.onnx_file, warm_step_ms=round(loaded.warm_step_s * 1000, 3),
            intra_op_threads=loaded.session.intra_op_threads, lanes=loaded.lanes.count if loaded.lanes else 1,
        )
        return HostedModel(loaded=loaded, scheduler=scheduler, found_in=found_in)

    def _retire(self, model: HostedModel) -> None:
        async def finish() -> None:
            await model.scheduler.close()
            labels = (model.name, model.version, model.manifest.task)
            if any((m.name, m.version, m.manifest.task) == labels for m in self._hosted):  # another copy serves
                _log.info("model_replaced", model=model.name, version=model.version, path=str(model.path))
                return
            self._metrics.model_info.labels(*labels).set(0)
            _log.info("model_retired", model=model.name, version=model.version, path=str(model.path))

        task = asyncio.get_running_loop().create_task(finish())
        self._retiring[task] = model
        task.add_done_callback(self._retiring.pop)


def _keep_previous(hosted: list[HostedModel], previous: HostedModel | None, path: Path) -> None:
    """A refused folder keeps serving the version it held (unless another folder now serves that version)."""
    if previous is None or any((m.name, m.version) == (previous.name, previous.version) for m in hosted):
        return
    hosted.append(previous)
    _log.warning("bundle_kept_previous", path=str(path), model=previous.name, version=previous.version)
