"""`trm-train export --from-bundle` on a sequence bundle: the same weights written again by this version's exporter,
as a new version, its figures and files kept; a graph that no longer computes the old step is refused."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.sequence.bundle as sequence_bundle
from trainer.cli import main
from trainer.sequence.bundle import sequence_model_from_bundle
from trm_bundle.manifest import load_bundle

SHIPPED = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "code-dictation"


def _export(*flags: str) -> int:
    return main(["export", "--from-bundle", str(SHIPPED), *flags])


def test_a_sequence_bundle_is_re_exported_as_a_new_version_with_its_weights_and_figures(tmp_path: Path) -> None:
    assert _export("--bundle-version", "9.0.0", "--out", str(tmp_path)) == 0
    old, new = load_bundle(SHIPPED), load_bundle(tmp_path / "code-dictation")
    assert new.manifest.version == "9.0.0"
    unchanged = {**vars(old.manifest), "version": "9.0.0", "files": new.manifest.files}
    assert new.manifest == type(old.manifest)(**unchanged)  # nothing else changed
    assert (new.path / "evaluation.json").read_bytes() == (SHIPPED / "evaluation.json").read_bytes()
    report = (new.path / "REPORT.md").read_text().splitlines()
    assert report[0] == "# code-dictation 9.0.0"
    assert report[1:-4] == (SHIPPED / "REPORT.md").read_text().splitlines()[1:]
    assert report[-3] == "## Re-exported" and f"the weights of code-dictation {old.manifest.version}" in report[-1]
    before, after = sequence_model_from_bundle(old).state_dict(), sequence_model_from_bundle(new).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("reading", ["null", "spoken_words"])
def test_a_re_export_may_change_how_the_bundle_reads_its_text_and_says_so(tmp_path: Path, reading: str) -> None:
    old = load_bundle(SHIPPED)
    assert _export("--bundle-version", "9.0.0", "--set", f"normalize={reading}", "--out", str(tmp_path)) == 0
    new = load_bundle(tmp_path / "code-dictation")
    normalize = None if reading == "null" else reading
    assert new.manifest.input.normalize == normalize
    assert new.manifest.input == type(old.manifest.input)(**{**vars(old.manifest.input), "normalize": normalize})
    said = (new.path / "REPORT.md").read_text().splitlines()[-1]
    if normalize == old.manifest.input.normalize:
        assert said.endswith("the figures above are theirs (decoded in PyTorch).")  # the re-export's line alone
    else:
        assert said == (f"- Its text is read {'as spoken words' if normalize else 'as given'} (`input.normalize`), "
                        f"where {old.manifest.version} read it {'as given' if normalize else 'as spoken words'}.")


def test_a_re_export_whose_step_computes_something_else_is_refused_and_leaves_nothing(tmp_path: Path, monkeypatch,
                                                                                      capsys) -> None:
    export_graphs = sequence_bundle.export_graphs

    def export_other_weights(model, directory):
        other = copy.deepcopy(model)
        with torch.no_grad():
            other.answer.vocabulary.weight.mul_(1.5)
        return export_graphs(other, directory)

    monkeypatch.setattr(sequence_bundle, "export_graphs", export_other_weights)
    assert _export("--set", "version=9.0.0", "--out", str(tmp_path)) != 0
    assert "the re-exported step's log_probs differs from the old one's" in capsys.readouterr().err
    assert not (tmp_path / "code-dictation").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (("--set", "lr=0.1"), "--bundle-version and --set normalize=... are its only settings"),
    (("--set", "normalize=lowercase"), "--set normalize=lowercase: must be one of spoken_words, or null"),
    (("--ablation", str(SHIPPED / "evaluation.json")), "leave out --ablation"),
    (("--set", "version=_1"), "--set version=_1: must be"),
])
def test_settings_a_sequence_re_export_cannot_apply_are_refused(flags: tuple[str, ...], message: str,
                                                                tmp_path: Path, capsys) -> None:
    assert _export(*flags, "--out", str(tmp_path)) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "code-dictation").exists()


def test_the_re_exported_shipped_step_gives_every_row_the_same_bits_in_any_batch() -> None:
    """Rows of different input and prefix lengths, batched and alone, padded as the server pads them."""
    from trm_service.runtime.sequence_session import SequenceSession, padded_length
    from trm_service.runtime.session import SessionSettings

    bundle = load_bundle(SHIPPED)
    session = SequenceSession(bundle.file(bundle.manifest.sequence.encode), bundle.file(bundle.manifest.onnx_fp32),
                              bundle.manifest, SessionSettings())
    spec, rng = session.spec, np.random.default_rng(0)
    sources = [rng.integers(3, len(bundle.manifest.labels), size) for size in (5, 13, 31, 46)]
    prefixes = [0, 3, 6, 21]

    def step(rows: list[int]) -> list[np.ndarray]:
        source_len = padded_length(max(len(sources[row]) for row in rows))
        prefix_len = padded_length(max(prefixes[row] for row in rows) + 1) - 1
        encoded = [session.encode([sources[row]])[0] for row in rows]
        feed = {"source": np.full((len(rows), source_len), session.pad_id),
                "source_keys": np.zeros((len(rows), spec.layers, spec.heads, source_len, spec.head_dim), np.float32),
                "pointer_keys": np.zeros((len(rows), source_len, session.hidden_size), np.float32),
                "previous": np.full(len(rows), spec.bos_id), "position": np.array([prefixes[row] for row in rows]),
                "prefix_keys": np.zeros((len(rows), spec.slots, spec.heads, prefix_len, spec.head_dim), np.float32),
                "prefix_mask": np.zeros((len(rows), prefix_len), bool)}
        feed["source_values"], feed["prefix_values"] = feed["source_keys"].copy(), feed["prefix_keys"].copy()
        feed["y"] = feed["z"] = np.stack([np.random.default_rng(row).standard_normal(session.hidden_size)
                                          for row in rows]).astype(np.float32)
        for index, (row, encoding) in enumerate(zip(rows, encoded, strict=True)):
            length, emitted = len(sources[row]), prefixes[row]
            feed["source"][index, :length] = sources[row]
            feed["source_keys"][index, :, :, :length] = encoding.keys
            feed["source_values"][index, :, :, :length] = encoding.values
            feed["pointer_keys"][index, :length] = encoding.pointer_keys
            entries = np.random.default_rng(100 + row).standard_normal((2, spec.slots, spec.heads, emitted,
                                                                         spec.head_dim)).astype(np.float32)
            feed["prefix_keys"][index, :, :, :emitted], feed["prefix_values"][index, :, :, :emitted] = entries
            feed["prefix_mask"][index, :emitted] = True
        outputs = session.step(feed)
        return [np.concatenate([outputs.log_probs[index], outputs.halt_logit[index:index + 1]])
                for index in range(len(rows))]

    together = step([0, 1, 2, 3])
    for row in range(4):
        assert np.array_equal(step([row])[0], together[row]), row
