"""TRM co-processor server: hosts Tiny Recursive Model bundles over gRPC with ONNX Runtime (never torch)."""

from trm_bundle.offline import keep_onnx_runtime_offline

keep_onnx_runtime_offline()

__version__ = "1.0.0"
