"""The process around a baseline server (naive_server, plain_server): command line, a synchronous
grpc.server on 127.0.0.1, the bound port written to --ready-file, and a stop on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from trm.v1 import trm_pb2_grpc

SIGNAL_CHECK_S = 0.5
"""How often the main thread wakes to run signal handlers: a signal that one of gRPC's threads receives only
sets a flag, and a main thread blocked in Event.wait() without a timeout would never run the handler (a
fixed-reply server, stopped right after it started, once waited for ever)."""
ServicerFactory = Callable[[Path], trm_pb2_grpc.ReasoningServiceServicer]


def serve(
    servicer: trm_pb2_grpc.ReasoningServiceServicer, workers: int, host: str, port: int, ready_file: Path | None
) -> None:
    """Serve with `workers` handler threads until SIGTERM or SIGINT; write the bound port to `ready_file`."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    trm_pb2_grpc.add_ReasoningServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    if ready_file is not None:
        write_port(ready_file, bound)
    while not stop.wait(SIGNAL_CHECK_S):
        pass
    server.stop(grace=1).wait()


def write_port(ready_file: Path, port: int) -> None:
    """Write the bound port to `ready_file` atomically (its reader polls for the file)."""
    partial = ready_file.with_name(ready_file.name + ".partial")
    partial.write_text(str(port))
    partial.replace(ready_file)


def main(argv: list[str] | None, description: str, make_servicer: ServicerFactory, workers: int) -> None:
    """Parse --models-dir, --host, --port and --ready-file, build the servicer and serve it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)
    serve(make_servicer(args.models_dir), workers, args.host, args.port, args.ready_file)
