"""The trainer: labelled data to TRM bundles (`trm-train`)."""

from trm_bundle.offline import keep_onnx_runtime_offline

keep_onnx_runtime_offline()
