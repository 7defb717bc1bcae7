"""A sequence model as a bundle (docs/BUNDLE.md, task "sequence"): its two graphs and the manifest."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from trainer.sequence.decode import Halting
from trainer.sequence.export import OPSET, example_inputs, export_graphs
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.vocab import BOS_ID, CHARACTERS, EOS_ID, PAD_ID, SPECIALS
from trm_bundle.manifest import (
    ENCODE_FILE,
    SEQUENCE_STEP_FILE,
    Bundle,
    CharacterInput,
    Manifest,
    Recursion,
    SequenceOutput,
    Training,
    load_bundle,
)
from trm_bundle.writer import write_bundle
from trm_service.runtime.sequence_session import SequenceSession
from trm_service.runtime.session import SessionSettings

VOCABULARY = (*SPECIALS, *CHARACTERS)  # the manifest's labels: token id -> its text
KEEP_NORMALIZE = object()  # a re-export's default: the text read as the source bundle reads it
REPORT_FILE = "REPORT.md"


def sequence_manifest(model: SequenceTRM, *, name: str, version: str, description: str, max_chars: int,
                      training: Training | None, metrics: Mapping[str, float] | None = None,
                      halt_threshold: float = 0.5, halt_when_unchanged: bool = False,
                      unsure_below: float = 0.0, checks: tuple[str, ...] = (),
                      normalize: str | None = None) -> Manifest:
    """The manifest of `model`'s bundle: its vocabulary, input limit and how its text is read (`normalize`), output
    limit, caches' geometry, halting rule, the confidence below which an answer is unsure and the checks of its
    finished answers."""
    cfg = model.cfg
    if max_chars > cfg.max_source_len:
        raise ValueError(f"max_chars {max_chars} exceeds the model's {cfg.max_source_len} source positions")
    return Manifest(
        name=name, version=version, task="sequence", description=description, labels=VOCABULARY,
        input=CharacterInput(max_chars=max_chars, pad_id=PAD_ID, normalize=normalize),
        recursion=Recursion(n=cfg.n, T=cfg.T, N_sup=cfg.N_sup, state_shape=(1, cfg.hidden_size)),
        halt_threshold=halt_threshold, min_steps=1, out_of_scope=None, metrics=dict(metrics or {}),
        onnx_fp32=SEQUENCE_STEP_FILE, onnx_int8=None, onnx_opset=OPSET, training=training,
        sequence=SequenceOutput(max_tokens=cfg.max_target_len, bos_id=BOS_ID, eos_id=EOS_ID,
                                layers=cfg.num_layers, slots=cfg.slots, heads=cfg.num_heads,
                                head_dim=cfg.head_dim, encode=ENCODE_FILE,
                                prefix_steps=cfg.prefix_steps if cfg.cache_steps < cfg.N_sup else None,
                                halt_when_unchanged=halt_when_unchanged, unsure_below=unsure_below, checks=checks),
    )


def write_sequence_bundle(folder: Path, model: SequenceTRM, manifest: Manifest,
                          extra_files: Mapping[str, Path | bytes | str] | None = None) -> Bundle:
    """Export `model`'s graphs and write the bundle (with `extra_files`: REPORT.md, plots) at `folder`."""
    with tempfile.TemporaryDirectory() as scratch:
        encode_path, step_path = export_graphs(model, Path(scratch))
        return write_bundle(folder, manifest, {ENCODE_FILE: encode_path, SEQUENCE_STEP_FILE: step_path,
                                               **(extra_files or {})})


def reexport_sequence_bundle(source: Path, out: Path, version: str | None, command: str,
                             normalize: str | object | None = KEEP_NORMALIZE) -> Bundle:
    """Write a sequence bundle's own weights with this version's exporter to out/<name>, as `version` (default:
    its own), reading its text through `normalize` (default: as the source bundle does). The figures stay (they are
    the weights', decoded in PyTorch); REPORT.md is retitled and says how the graphs were written again. Raises
    ValueError when the new step does not compute the old one's outputs."""
    bundle = load_bundle(source)
    manifest = bundle.manifest
    if manifest.sequence is None or not isinstance(manifest.input, CharacterInput):
        raise ValueError(f"{source} is not a sequence bundle")
    reading = manifest.input.normalize if normalize is KEEP_NORMALIZE else normalize
    manifest = dataclasses.replace(manifest, version=version or manifest.version,
                                   input=dataclasses.replace(manifest.input, normalize=reading))
    report = (source / REPORT_FILE).read_text().splitlines()
    report[0] = f"# {manifest.name} {manifest.version}"
    report += ["", "## Re-exported", "",
               f"- `{command}`: the weights of {bundle.manifest.name} {bundle.manifest.version}, their graphs "
               "written by this version's exporter; the figures above are theirs (decoded in PyTorch)."]
    if reading != bundle.manifest.input.normalize:
        report.append(f"- Its text is read {_reading(reading)} (`input.normalize`), where {bundle.manifest.version} "
                      f"read it {_reading(bundle.manifest.input.normalize)}.")
    kept = {name: source / name for name in manifest.files if name not in (ENCODE_FILE, SEQUENCE_STEP_FILE)}
    written = write_sequence_bundle(out / manifest.name, sequence_model_from_bundle(bundle), manifest,
                                    {**kept, REPORT_FILE: "\n".join(report) + "\n"})
    try:
        _check_same_step(bundle, written)
    except ValueError:
        shutil.rmtree(written.path)
        raise
    return written


def _reading(normalize: str | None) -> str:
    """How a bundle reads its text, in words: "as spoken words", or "as given"."""
    return f"as {normalize.replace('_', ' ')}" if normalize else "as given"


def _check_same_step(old: Bundle, new: Bundle) -> None:
    """Raise ValueError unless both bundles' graphs give the same outputs, within float rounding, on a random batch."""
    inputs = {name: tensor.numpy() for name, tensor in example_inputs(sequence_model_from_bundle(new)).items()}
    before, after = (vars(_served_step(bundle).step(inputs)) for bundle in (old, new))
    for name in before:
        if not np.allclose(before[name], after[name], rtol=0, atol=1e-4):
            raise ValueError(f"the re-exported step's {name} differs from the old one's by up to "
                             f"{_largest_difference(before[name], after[name]):.3g}: not the same model")


def _largest_difference(before: np.ndarray, after: np.ndarray) -> float:
    """The largest difference of two outputs, leaving out the places both hold -inf (the served step's masked
    marks: SequenceSession.step)."""
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(before - after)))


def _served_step(bundle: Bundle) -> SequenceSession:
    """A bundle's graphs as the server opens them (fp32)."""
    manifest = bundle.manifest
    return SequenceSession(bundle.file(manifest.sequence.encode), bundle.file(manifest.onnx_fp32), manifest,
                           SessionSettings())


def _loaded(bundle: Path | Bundle) -> Bundle:
    """A bundle as read and verified: `bundle` itself, or the folder's, read now."""
    return bundle if isinstance(bundle, Bundle) else load_bundle(Path(bundle))


def sequence_model_from_bundle(bundle: Path | Bundle) -> SequenceTRM:
    """The PyTorch model with exactly the weights of a sequence bundle's two graphs (exported without
    constant folding, their initializers are the parameters, named `model.<parameter>`); a folder or a bundle
    already read."""
    bundle = _loaded(bundle)
    manifest = bundle.manifest
    model = SequenceTRM(SequenceConfig(**manifest.require_training().model_config))
    weights = {}
    for file in (manifest.sequence.encode, manifest.onnx_fp32):
        for initializer in onnx.load(str(bundle.path / file)).graph.initializer:
            array = numpy_helper.to_array(initializer).copy()
            weights[initializer.name.removeprefix("model.")] = torch.from_numpy(array)
    model.load_state_dict({name: weights[name] for name in model.state_dict()})
    return model.eval()


def bundle_halting(bundle: Path | Bundle) -> Halting:
    """The halting rule a sequence bundle's manifest gives its tokens: its threshold, and whether a token also
    stops once a step leaves its answer unchanged (as the server decodes); a folder or a bundle already read."""
    manifest = _loaded(bundle).manifest
    return Halting(threshold=manifest.halt_threshold, when_unchanged=manifest.sequence.halt_when_unchanged)
