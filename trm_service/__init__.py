"""TRM co-processor server: hosts Tiny Recursive Model bundles over gRPC with ONNX Runtime (never torch)."""

__version__ = "1.0.0"
