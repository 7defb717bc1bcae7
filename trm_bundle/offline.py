"""ONNX Runtime without its telemetry, in every process of the product that may load it."""

import os

TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"


def keep_onnx_runtime_offline() -> None:
    """ONNX Runtime's official Linux builds (1.29 and later) send telemetry to Microsoft (a DNS lookup and an upload
    at its first session, a device id and an event cache under ~/.cache) unless TELEMETRY_SWITCH is set before
    onnxruntime is imported: set it (to 1, unless the environment gives it), so the product opens no connection.
    Called by each package that may import onnxruntime (trm_service, trainer, loadtests), before it does."""
    os.environ.setdefault(TELEMETRY_SWITCH, "1")
