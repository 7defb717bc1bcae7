"""Prometheus metrics and structured JSON logs."""
