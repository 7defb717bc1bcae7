"""A server that does no work: every Reason gets the same answer (a text bundle's first three labels),
on gRPC's synchronous server with 4 threads (the plain server's front end) or on grpc.aio with uvloop
(the service's). What it reaches is the ceiling of any server on that front end on this machine with
the benchmark's client (loadtests.ceiling).

    python -m loadtests.fixed_reply_server --front-end aio --models-dir trm_service/models --ready-file /tmp/p
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import grpc
import uvloop
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests import baseline_main
from trm_bundle.manifest import TextInput, load_bundle

SYNC_WORKERS = 4
TOP_K = 3


def fixed_reply(models_dir: Path) -> trm_pb2.ReasonResponse:
    """A Reason answer of the size a text model gives: its first text bundle's name and top-3 labels."""
    manifests = [load_bundle(path.parent).manifest for path in sorted(models_dir.glob("*/manifest.json"))]
    manifest = next(m for m in manifests if isinstance(m.input, TextInput))
    top = [trm_pb2.LabelScore(label=label, probability=0.5 / (rank + 1)) for rank, label in
           enumerate(manifest.labels[:TOP_K])]  # fmt: skip
    return trm_pb2.ReasonResponse(
        model=manifest.name,
        model_version=manifest.version,
        steps=1,
        halt_confidence=0.9,
        latency_ms=0.5,
        answer=trm_pb2.Answer(classification=trm_pb2.ClassAnswer(label=top[0].label, confidence=0.5, top=top)),
        halt_reason=trm_pb2.HALT_REASON_HALTED,
        request_id="0" * 32,
    )


class FixedReplyService(trm_pb2_grpc.ReasoningServiceServicer):
    """Reason answers `reply` at once (synchronous handler)."""

    def __init__(self, reply: trm_pb2.ReasonResponse) -> None:
        self.reply = reply

    def Reason(self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext) -> trm_pb2.ReasonResponse:
        return self.reply


class AsyncFixedReplyService(trm_pb2_grpc.ReasoningServiceServicer):
    """Reason answers `reply` at once (grpc.aio handler)."""

    def __init__(self, reply: trm_pb2.ReasonResponse) -> None:
        self.reply = reply

    async def Reason(self, request: trm_pb2.ReasonRequest, context: grpc.aio.ServicerContext) -> trm_pb2.ReasonResponse:
        return self.reply


async def serve_aio(reply: trm_pb2.ReasonResponse, host: str, port: int, ready_file: Path | None) -> None:
    """Serve on grpc.aio until SIGTERM or SIGINT; write the bound port to `ready_file`."""
    server = grpc.aio.server()
    trm_pb2_grpc.add_ReasoningServiceServicer_to_server(AsyncFixedReplyService(reply), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    if ready_file is not None:
        baseline_main.write_port(ready_file, bound)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a gRPC server that answers every Reason with a fixed reply")
    parser.add_argument("--front-end", choices=("sync", "aio"), required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)
    reply = fixed_reply(args.models_dir)
    if args.front_end == "sync":
        baseline_main.serve(FixedReplyService(reply), SYNC_WORKERS, args.host, args.port, args.ready_file)
    else:
        uvloop.run(serve_aio(reply, args.host, args.port, args.ready_file))


if __name__ == "__main__":
    main()
