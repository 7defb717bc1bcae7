"""Load tests (Locust), scenario runners and the benchmark against the naive PyTorch baseline."""

from trm_bundle.offline import keep_onnx_runtime_offline

keep_onnx_runtime_offline()
