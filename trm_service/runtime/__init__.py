"""Bundle loading and verification, the ONNX Runtime step session, input encoding and answer decoding."""
