"""The int8 step: every weight stored in int8, close to fp32, and each row's answer independent of its batch."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
import torch
from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic
from tokenizers import Tokenizer
from trainer_support import random_tokens
from trm.v1 import trm_pb2, trm_pb2_grpc

from trainer import evaluate as ev
from trainer.data.tokenizer import encode_texts
from trainer.export import export_step, quantize_step
from trainer.model import ModelConfig
from trainer.quantize import calibration_inputs, quantize_static_step
from trainer.testing import SAMPLE_TEXTS, make_random_bundle, random_model
from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import FP32_FILE, INT8_FILE, MANIFEST_FILE
from trm_service.testing import ServerProcess

torch.set_num_threads(1)

CONFIGS = {
    "text": ModelConfig(task="text", vocab_size=300, seq_len=24, num_outputs=9, hidden_size=64, num_heads=4, n=2, T=2,
                        N_sup=3, embed_dim=32),
    "pooled-text": ModelConfig(task="text", vocab_size=300, seq_len=64, num_outputs=5, hidden_size=48, num_heads=4,
                               n=2, T=2, N_sup=3, pool=8, doc_slot=True, embed_dim=16, embedding_storage="int8"),
    "grid": ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, hidden_size=64, mixer="mlp", n=2, T=2,
                        N_sup=3),
    "reader-text": ModelConfig(task="text", vocab_size=300, seq_len=24, num_outputs=9, hidden_size=64, num_heads=4,
                               n=2, T=2, N_sup=3, embed_dim=32, reader_rows=100),
}
TOLERANCE = 1e-4
BATCH = 64




def run_steps(step: ev.StepFn, cfg: ModelConfig, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All supervision steps for one server call: logits [steps, B, ...] and halting logits [steps, B]."""
    length, rows = cfg.served_step_shape(tokens)
    y = z = np.zeros((len(tokens), rows, cfg.hidden_size), dtype=np.float32)
    logits, halts = [], []
    for _ in range(cfg.N_sup):
        y, z, step_logits, halt = step(np.ascontiguousarray(tokens[:, :length]), y, z)
        logits.append(step_logits)
        halts.append(halt.reshape(-1))
    return np.stack(logits), np.stack(halts)


def alone_vs_batched(model_path: Path, cfg: ModelConfig, tokens: np.ndarray) -> tuple[float, int]:
    """Largest |logit or halting-logit difference| of each row run alone against the same row inside the batch
    `tokens` (each call cut to its own longest input, as the server does), and how many answers changed."""
    step = ev.onnx_step_fn(model_path, threads=1)
    batched_logits, batched_halts = run_steps(step, cfg, tokens)
    alone = [run_steps(step, cfg, tokens[i : i + 1]) for i in range(len(tokens))]
    alone_logits = np.concatenate([logits for logits, _ in alone], axis=1)
    alone_halts = np.concatenate([halts for _, halts in alone], axis=1)
    worst = max(np.abs(batched_logits - alone_logits).max(), np.abs(batched_halts - alone_halts).max())
    changed = int((batched_logits.argmax(-1) != alone_logits.argmax(-1)).sum())
    return float(worst), changed


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelConfig, Path]:
    """A random model's fp32 step and its int8 variant, calibrated on other random inputs."""
    torch.manual_seed(0)
    cfg = CONFIGS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    model = random_model(cfg).store_embeddings()
    torch.nn.init.normal_(model.q_head.weight, std=cfg.hidden_size**-0.5)  # a trained halting head, not a constant
    export_step(model, folder / FP32_FILE)
    quantize_static_step(folder / FP32_FILE, folder / INT8_FILE, random_tokens(cfg, 256, seed=1), cfg)
    return cfg, folder


def test_fp32_rows_are_exactly_independent_of_the_batch(exported: tuple[ModelConfig, Path]) -> None:
    """What lets the int8 step be exact too: a quantiser rounds even a 1e-7 difference up to a whole level."""
    cfg, folder = exported
    worst, changed = alone_vs_batched(folder / FP32_FILE, cfg, random_tokens(cfg, BATCH, seed=2))
    assert worst == 0.0 and changed == 0


def test_int8_rows_are_independent_of_the_batch(exported: tuple[ModelConfig, Path]) -> None:
    cfg, folder = exported
    worst, changed = alone_vs_batched(folder / INT8_FILE, cfg, random_tokens(cfg, BATCH, seed=2))
    assert worst <= TOLERANCE
    assert changed == 0


def test_dynamic_quantization_fails_the_same_check(exported: tuple[ModelConfig, Path]) -> None:
    """Dynamic int8 (each activation's scale from the whole batch) moves a row's logits with its neighbours."""
    cfg, folder = exported
    folded, dynamic = folder / "folded.onnx", folder / "dynamic.int8.onnx"
    quant_pre_process(str(folder / FP32_FILE), str(folded), skip_symbolic_shape=True)
    quantize_dynamic(str(folded), str(dynamic), weight_type=QuantType.QInt8)
    worst, _ = alone_vs_batched(dynamic, cfg, random_tokens(cfg, BATCH, seed=2))
    assert worst > 100 * TOLERANCE


def test_calibration_batches_are_cut_as_the_server_cuts_them(exported: tuple[ModelConfig, Path]) -> None:
    """Each calibration batch runs at its longest input rounded up to the pool, with the state rows of that
    length, as a served batch does (whole inputs for fixed-length steps)."""
    cfg, folder = exported
    widths = []
    for inputs in calibration_inputs(folder / FP32_FILE, random_tokens(cfg, 64, seed=2), cfg):
        tokens, y = inputs["tokens"], inputs["y"]
        if cfg.variable_length:
            longest = max(int(np.flatnonzero(row).max()) + 1 for row in tokens)
            assert tokens.shape[1] == -(-longest // cfg.pool) * cfg.pool
            assert y.shape[1] == cfg.slot_rows + tokens.shape[1] // cfg.pool
        else:
            assert (tokens.shape[1], y.shape[1]) == (cfg.seq_len, cfg.state_shape[0])
        widths.append(tokens.shape[1])
    assert widths == sorted(widths) and len(widths) == cfg.N_sup * 4  # 64 inputs in batches of 16, length-sorted


def test_int8_stores_every_weight_in_int8(exported: tuple[ModelConfig, Path]) -> None:
    """Every weight but a pooled model's token projection, whose inputs are sums over tokens."""
    cfg, folder = exported
    graph = onnx.load(str(folder / INT8_FILE)).graph
    initializers = {init.name: init for init in graph.initializer}
    dequantized = {node.output[0]: initializers[node.input[0]] for node in graph.node
                   if node.op_type == "DequantizeLinear" and node.input[0] in initializers}
    products = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    float_weights = sorted(node.name for node in products if node.input[1] in initializers)
    pooled_projection = ["/embed/project/MatMul", "/embed/project_1/MatMul"]
    assert float_weights == (pooled_projection if cfg.pool > 1 and cfg.embed_dim else [])
    weights = [dequantized[node.input[1]] for node in products if node.input[1] in dequantized]
    assert len(weights) >= 2 * cfg.num_layers + 2  # the blocks' projections, the answer and halting heads
    assert {weight.data_type for weight in weights} == {onnx.TensorProto.INT8}
    float_bytes = sum(len(init.raw_data) for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT)
    int8_bytes = sum(len(init.raw_data) for init in graph.initializer if init.data_type == onnx.TensorProto.INT8)
    assert float_bytes < int8_bytes


@pytest.mark.parametrize("exported", ["text", "pooled-text", "reader-text"], indirect=True)
def test_int8_follows_fp32_through_every_step(exported: tuple[ModelConfig, Path]) -> None:
    """Text models only: one fixed scale per activation must cover every supervision step, and the random grid
    model's states grow step after step, so its int8 step is coarse (the exporter ships int8 only when it loses
    at most 0.5 points of accuracy)."""
    cfg, folder = exported
    tokens = random_tokens(cfg, 128, seed=3)
    fp32_logits, fp32_halts = run_steps(ev.onnx_step_fn(folder / FP32_FILE), cfg, tokens)
    int8_logits, int8_halts = run_steps(ev.onnx_step_fn(folder / INT8_FILE), cfg, tokens)
    assert np.corrcoef(fp32_logits.ravel(), int8_logits.ravel())[0, 1] > 0.98
    assert np.corrcoef(fp32_halts.ravel(), int8_halts.ravel())[0, 1] > 0.98
    assert not np.array_equal(fp32_logits, int8_logits)


def _add_int8(bundle: Path) -> None:
    """Quantises a bundle's step as the exporter does and lists the int8 file in its manifest."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    tokenizer = Tokenizer.from_file(str(bundle / manifest["input"]["tokenizer"]))
    calibration = encode_texts(tokenizer, [f"{text} {i}" for i, text in enumerate(SAMPLE_TEXTS * 8)])
    cfg = ModelConfig(**manifest["training"]["model_config"])
    quantize_step(bundle / FP32_FILE, bundle / INT8_FILE, calibration, cfg)
    manifest["onnx"]["int8"] = INT8_FILE
    manifest["files"][INT8_FILE] = sha256_of(bundle / INT8_FILE)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def test_server_answers_the_same_alone_and_among_63_others_with_int8(tmp_path: Path) -> None:
    """Through a real server running int8 (its default): trimmed, length-sorted calls of mixed lengths."""
    torch.manual_seed(0)
    bundle = make_random_bundle(tmp_path, "text", name="int8-text", N_sup=4, pool=4, doc_slot=True, seed=5)
    _add_int8(bundle)
    words = " ".join(SAMPLE_TEXTS).split()

    def request(i: int) -> trm_pb2.ReasonRequest:
        text = " ".join(words[(i * 5 + k) % len(words)] for k in range(1 + i % 11))
        budget = trm_pb2.Budget(max_steps=4, halt_threshold=1.0)
        return trm_pb2.ReasonRequest(model="int8-text", text=text, top_k=5, budget=budget)

    with ServerProcess([bundle]) as server:
        with grpc.insecure_channel(server.target) as channel:
            alone = [trm_pb2_grpc.ReasoningServiceStub(channel).Reason(request(i), timeout=60) for i in range(BATCH)]
        start = threading.Barrier(BATCH)

        def client(i: int) -> trm_pb2.ReasonResponse:
            with grpc.insecure_channel(server.target) as own_channel:
                stub = trm_pb2_grpc.ReasoningServiceStub(own_channel)
                stub.ListModels(trm_pb2.ListModelsRequest(), timeout=60)  # connected before the race
                start.wait(timeout=60)
                return stub.Reason(request(i), timeout=60)

        with ThreadPoolExecutor(max_workers=BATCH) as pool:
            together = list(pool.map(client, range(BATCH)))
        single_steps = server.sample_value("trm_batch_size_bucket", le="1.5")
        assert server.sample_value("trm_batch_size_count") > single_steps  # the concurrent requests shared steps
    for one, batched in zip(alone, together, strict=True):
        one_top, batched_top = one.answer.classification.top, batched.answer.classification.top
        assert [c.label for c in batched_top] == [c.label for c in one_top]
        assert max(abs(a.probability - b.probability) for a, b in zip(one_top, batched_top, strict=True)) <= 1e-5
        assert batched.halt_confidence == pytest.approx(one.halt_confidence, abs=1e-6)
    assert len({one.answer.classification.top[0].label for one in alone}) > 1  # the inputs really differ
