"""fp32 supervision step -> int8 step whose rows do not depend on the rest of the batch.

Static quantisation with ONNX Runtime (QDQ format): every MatMul and Gemm with a constant weight gets
int8 weights (one scale per output channel) and a uint8 input whose scale and zero point are fixed
here, calibrated (min/max) on real inputs run through every supervision step. A Gather of a constant
table reads int8 rows. Products of two activations (attention) and every MatMul output stay float;
ONNX Runtime runs each quantised product as QuantizeLinear + MatMulIntegerToFloat. The token projection
of a pooled or document-slot model stays float: its inputs are sums and means over a text's tokens, whose
range moves with the text's length, so one fixed activation scale would round short texts coarsely
(routing-20ng: test accuracy 0.25 points below fp32 with it int8, 0.03 with it float), and it is a few rows per text.

The weights use 7 of their 8 bits (`reduce_range`): on an x86 CPU without VNNI (AVX2 or AVX-512 alone), ONNX
Runtime multiplies uint8 activations by int8 weights with an instruction that adds pairs of products into 16 bits
and saturates there (255 x 127 x 2 > 32,767), so the same int8 step answered differently by CPU: on an AMD EPYC
with AVX2 alone (2026-12-05), random test models' int8 logits correlated 0.76-0.86 with fp32
(tests/test_trainer_quantize.py asks over 0.98, which every machine before had met), and a CLINC150 fit's int8
answers agreed with its fp32 ones on 98.78 % of the test rows against 99.20 % with 7-bit weights. With them no
product can saturate on any CPU.

Dynamic quantisation would instead take each activation's scale from the whole batch, so one row's
logits would move with its neighbours; docs/BUNDLE.md promises that rows of a batch are independent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from trainer.model import ModelConfig
from trm_bundle.manifest import STEP_INPUTS, STEP_OUTPUTS, real_lengths

CALIBRATION_ROWS = 512  # step inputs measured: 512 examples of a one-step model, 64 of an eight-step one
CALIBRATION_BATCH = 16  # rows per call, as in the server (calibrating a Sudoku step holds ~140 MB per row)
QUANTIZED_OPS = ("MatMul", "Gemm", "Gather")
StepInputs = dict[str, np.ndarray]


def quantize_static_step(fp32_path: Path, int8_path: Path, tokens: np.ndarray, cfg: ModelConfig) -> None:
    """Writes the int8 variant of the fp32 step at `fp32_path` to `int8_path`.

    `tokens` [N, seq_len] are real inputs of the model's task, padded as for training (the validation
    split, say); a seeded sample of CALIBRATION_ROWS / `cfg.N_sup` of them runs through all `cfg.N_sup` steps.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        # The exported step keeps weights behind Transpose nodes; folding them gives each MatMul a constant weight.
        quant_pre_process(str(fp32_path), str(folded), skip_symbolic_shape=True)
        quantize_static(
            str(folded), str(int8_path), _Reader(calibration_inputs(fp32_path, tokens, cfg)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=weight_nodes(onnx.load(str(folded)), keep_float=float_nodes(cfg)),
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no CPU's int8 product saturates (module docstring)
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
        )


def float_nodes(cfg: ModelConfig) -> tuple[str, ...]:
    """Name prefixes of the nodes that stay float: the token projection when its inputs are sums over tokens,
    and the linear reader (its table is int8 already; the quantiser would round its per-row idf lookups too)."""
    pooled = ("/embed/project",) if cfg.embed_dim and (cfg.pool > 1 or cfg.doc_slot) else ()
    return pooled + (("/reader/",) if cfg.reader_rows else ())


def weight_nodes(model: onnx.ModelProto, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the nodes that multiply by or look up a constant: the ones worth storing in int8, less
    those whose name starts with one of `keep_float`."""
    constants = {init.name for init in model.graph.initializer}
    nodes = [
        node for node in model.graph.node
        if ((node.op_type in QUANTIZED_OPS[:2] and node.input[1] in constants)
            or (node.op_type == "Gather" and node.input[0] in constants))
        and not node.name.startswith(keep_float)
    ]
    unnamed = [node.op_type for node in nodes if not node.name]
    if unnamed:
        raise ValueError(f"cannot select unnamed nodes for quantisation: {', '.join(unnamed)}")
    return [node.name for node in nodes]


def calibration_inputs(fp32_path: Path, tokens: np.ndarray, cfg: ModelConfig) -> Iterator[StepInputs]:
    """The inputs of every supervision step for a seeded sample of `tokens`, batched as the server batches:
    sorted by length, each batch cut to its longest input (variable-length steps); the fp32 step makes the
    states of the next step. Yields one batch at a time, so long recursions stay small in memory."""
    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    examples = max(CALIBRATION_BATCH, CALIBRATION_ROWS // cfg.N_sup)
    sample = tokens[np.sort(rng.permutation(len(tokens))[:examples])]
    order = np.argsort(real_lengths(sample, cfg.pad_id), kind="stable")
    for start in range(0, len(order), CALIBRATION_BATCH):
        rows = order[start : start + CALIBRATION_BATCH]
        length, state_rows = cfg.served_step_shape(sample[rows])
        batch_tokens = np.ascontiguousarray(sample[rows, :length])
        y = np.zeros((len(rows), state_rows, cfg.hidden_size), dtype=np.float32)
        z = y
        for _ in range(cfg.N_sup):
            inputs = dict(zip(STEP_INPUTS, (batch_tokens, y, z), strict=True))
            yield inputs
            y, z = session.run(list(STEP_OUTPUTS[:2]), inputs)


class _Reader(CalibrationDataReader):
    """ONNX Runtime's calibration interface over an iterator of step inputs."""

    def __init__(self, inputs: Iterator[StepInputs]) -> None:
        self._inputs = inputs

    def get_next(self) -> StepInputs | None:
        return next(self._inputs, None)
