"""`trm-service serve`: flags, each with a TRM_* environment variable (a flag wins over its variable)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

from trm_service.config import ConfigError, ServeConfig
from trm_service.observability.logging import configure_logging
from trm_service.server import cannot_start, serve_process
from trm_service.workers import run_workers

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class _Option:
    field: str
    kind: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        return "TRM_" + self.field.upper()


def _flag(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _host(text: str) -> str:
    """An address, an IPv6 one also in brackets as in URLs (`[::1]`), which the metrics server cannot read."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


_OPTIONS = (
    _Option("host", _host, "address to listen on (gRPC and metrics); 0.0.0.0 or :: is every IPv4 and IPv6 "
            "interface"),
    _Option("port", int, "gRPC port; 0 picks a free one (see --ready-file)"),
    _Option("metrics_port", int, "Prometheus /metrics HTTP port; 0 picks a free one"),
    _Option("metrics_host", _host, "address of /metrics, where it is not --host (it is plaintext HTTP without "
            "authentication, TLS or not: e.g. 127.0.0.1 beside --host 0.0.0.0)"),
    _Option("max_batch_size", int, "per model version: most requests in one step batch"),
    _Option("max_queue", int, "per model version: most requests waiting (then RESOURCE_EXHAUSTED)"),
    _Option("max_rows_per_run", int, "most rows per ONNX Runtime call: a step's batch runs as several calls, "
            "sorted by input length (bounds memory; shorter inputs run shorter)"),
    _Option("max_batch_requests", int, "most requests in one ReasonBatch call (then INVALID_ARGUMENT)"),
    _Option("call_acceptors", int, "calls of each of Reason and ReasonStream gRPC may hand to the server at once "
            "beyond grpc.aio's own one (the serving log's call_acceptor_tasks counts both): under load calls "
            "reach the scheduler sooner; 0: grpc.aio's own only"),
    _Option("workers", int, "server processes sharing the port with SO_REUSEPORT, metrics merged"),
    _Option("tls_cert", Path, "PEM certificate chain: serve TLS"),
    _Option("tls_key", Path, "PEM private key of --tls-cert"),
    _Option("tls_client_ca", Path, "PEM CA bundle: require client certificates it signed (mutual TLS)"),
    _Option("grace_period", float, "seconds in-flight requests get to finish after SIGTERM"),
    _Option("drain_delay", float, "seconds to keep accepting requests after health turns NOT_SERVING"),
    _Option("ready_file", Path, 'write {"port", "metrics_port", "pid"} as JSON here once serving'),
    _Option("intra_op_threads", int, "ONNX Runtime threads per model session; 0: one, and for a model whose "
            "one-request step takes 10 ms or more (Sudoku) a step's calls side by side on every CPU (within a "
            "container's CPU limit), and every CPU for a lone request's step where that makes it at least a "
            "tenth faster"),
    _Option("max_message_bytes", int, "largest gRPC message accepted or sent"),
    _Option("max_connections", int, "most open connections at once (a further one is closed as it opens); 0: "
            "the process's open-file limit less 128, which stay for the metrics port and the bundles"),
    _Option("max_pending_calls", int, "most calls waiting inside gRPC for the server to take them (a further one "
            "is cancelled by gRPC: CANCELLED)"),
    _Option("max_connection_age", float, "seconds a client connection lasts before the server asks the client to "
            "reconnect (the calls on it finish), so that long-lived clients reach replicas added since; 0: no limit"),
    _Option("max_time_budget_ms", int, "largest Budget.time_budget_ms a request may ask for"),
    _Option("deadline_margin_ms", int, "answer this long before a request's gRPC deadline"),
    _Option("load_wait_ms", int, "under load, lower each model's step cap so that queued requests start within "
            "this many ms (answers end with HALT_REASON_LOAD); 0 turns it off"),
    _Option("log_level", str, "debug, info, warning or error"),
)
_SWITCHES = (
    _Option("no_default_models", _flag, "do not serve the bundles packaged in trm_service/models"),
    _Option("log_inputs", _flag, "include request text/grids in the request log lines"),
    _Option("no_pin_event_loop", _flag, "let the kernel place every thread (by default the event loop and "
            "gRPC's threads share one CPU, gRPC's threads yielding to the loop, and compute threads use all: up to a "
            "third more requests/s at low concurrency and a fifth more under load on 2 cores; use this flag where "
            "many busy processes share a node's CPUs without a cpuset)"),
    _Option("fp32", _flag, "run every bundle's fp32 model.onnx, also where it ships an int8 model (by default "
            "the int8 model runs where shipped: the trainer ships it only if it loses at most 0.5 points)"),
)


def build_parser() -> argparse.ArgumentParser:
    """The `trm-service` argument parser."""
    parser = argparse.ArgumentParser(prog="trm-service", description="TRM reasoning co-processor (gRPC)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('trm-coprocessor')}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the model bundles over gRPC",
        description="Serve model bundles over gRPC. Every flag can also be set with its TRM_* variable.",
        epilog="Signals: SIGHUP reloads the model folders (new and changed bundles load while the others serve; "
        "a folder that fails to verify is refused and what it held keeps serving) and reads the TLS files again "
        "(new connections get a renewed certificate). SIGTERM or SIGINT (Ctrl-C) "
        "drains: health turns NOT_SERVING, requests are taken for --drain-delay s, running ones get "
        "--grace-period s, then the process exits.",
    )
    defaults = ServeConfig()
    for option in _OPTIONS:
        default = getattr(defaults, option.field)
        serve.add_argument(
            option.flag, type=option.kind, default=None,
            help=f"{option.help} (default {default}; env {option.env})",
        )
    serve.add_argument(
        "--models-dir", action="append", type=Path, default=None, metavar="DIR",
        help="a bundle folder or a folder of bundle folders; repeatable "
        f"(env TRM_MODELS_DIR, several separated by {os.pathsep!r})",
    )
    for option in _SWITCHES:
        serve.add_argument(
            option.flag, action="store_true", default=None, help=f"{option.help} (env {option.env})"
        )
    return parser


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> ServeConfig:
    """Merge parsed flags over TRM_* variables over the defaults; raise ConfigError on a bad value, naming the
    variable where it came from one."""
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}  # flag -> the variable that set it
    for option in (*_OPTIONS, *_SWITCHES):
        value = getattr(args, option.field)
        if value is None and option.env in environ:
            variables[option.flag] = option.env
            try:
                value = option.kind(environ[option.env])
            except ValueError as exc:
                raise ConfigError(f"{option.env}={environ[option.env]!r} is not valid: {exc}") from exc
        if value is not None:
            values[option.field] = value
    if "no_default_models" in values:
        values["default_models"] = not values.pop("no_default_models")
    if "no_pin_event_loop" in values:
        values["pin_event_loop"] = not values.pop("no_pin_event_loop")
    dirs = args.models_dir
    if dirs is None and environ.get("TRM_MODELS_DIR"):
        variables["--models-dir"] = "TRM_MODELS_DIR"
        dirs = [Path(p) for p in environ["TRM_MODELS_DIR"].split(os.pathsep) if p]
    values["models_dirs"] = tuple(dirs or ())
    known = {f.name for f in fields(ServeConfig)}
    config = ServeConfig(**{k: v for k, v in values.items() if k in known})
    try:
        config.check()
    except ConfigError as exc:  # its message names the flag first: a container set the variable, not the flag
        variable = variables.get(str(exc).split(" ", 1)[0])
        if variable is None:
            raise
        raise ConfigError(f"{variable}={environ[variable]!r} is not valid: {exc}") from exc
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trm-service` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, dict(os.environ))
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging(config.log_level)
    if config.workers <= 1:
        return serve_process(config)
    try:
        return run_workers(config)
    except ConfigError as exc:  # the port or the metrics port, before any worker starts
        return cannot_start(exc)


if __name__ == "__main__":
    sys.exit(main())
