"""The SDK's channel against a slow link and a hung replica: real servers, a real delaying TCP proxy."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sdk_test_support import TEXT_MODEL
from trm_client import NO_RETRY, TRMClient, TRMError

from trm_service.testing import ServerProcess

ONE_WAY_DELAY_S = 0.4  # a 0.8 s round trip: a far region, a satellite link


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy `reader` to `writer`, each chunk `delay_s` after it arrived (chunks keep their order)."""
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            arrived, data = await chunks.get()
            await asyncio.sleep(max(0.0, arrived + delay_s - time.monotonic()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    while data := await reader.read(65536):
        chunks.put_nowait((time.monotonic(), data))
    chunks.put_nowait((time.monotonic(), b""))
    await sender


@contextmanager
def delaying_proxy(target_port: int, delay_s: float) -> Iterator[str]:
    """A loopback TCP proxy to `target_port` that delays every byte by `delay_s` each way; yields its target."""

    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(_forward(client_reader, server_writer, delay_s),
                             _forward(server_reader, client_writer, delay_s), return_exceptions=True)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = asyncio.run_coroutine_threadsafe(asyncio.start_server(connect, "127.0.0.1", 0), loop).result(10)
    try:
        yield f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        asyncio.run_coroutine_threadsafe(_close(listener), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _close(listener: asyncio.Server) -> None:
    """Stop listening and end every connection's tasks."""
    listener.close()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_slow_link_connects_on_the_first_attempt(server: ServerProcess):
    """QA: the SDK gave one connection attempt 0.2-2.4 s (gRPC reads grpc.min_reconnect_backoff_ms as that
    time): through a link of 0.8 s round trip the first call failed UNAVAILABLE without retries, and a TLS link
    of 1.4 s never connected; gRPC's own channel connected in 1.2 and 4.2 s."""
    with delaying_proxy(server.port, ONE_WAY_DELAY_S) as target, \
            TRMClient(target, retry=NO_RETRY, timeout_s=30.0) as client:
        assert client.reason(TEXT_MODEL, "play jazz").model == TEXT_MODEL


@pytest.fixture
def two_replicas(bundles) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with ServerProcess([bundles["text"]]) as one, ServerProcess([bundles["text"]]) as two:
        yield one, two


def test_a_hung_replica_is_skipped_within_fifteen_seconds(two_replicas):
    """QA: a replica that hung (SIGSTOP: a stuck process, a host off the network) kept its connection, and every
    other call waited out its deadline on it for as long as the client ran (20 of 39 calls in 40 s)."""
    healthy, hung = two_replicas
    with TRMClient([healthy.target, hung.target], timeout_s=2.0) as client:
        for _ in range(4):
            client.reason(TEXT_MODEL, "play jazz")  # both connections up
        hung.send_signal(signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            outcomes: list[tuple[float, bool]] = []
            while time.monotonic() - frozen_at < 22:
                try:
                    client.reason(TEXT_MODEL, "play jazz")
                    outcomes.append((time.monotonic() - frozen_at, True))
                except TRMError:
                    outcomes.append((time.monotonic() - frozen_at, False))
        finally:
            hung.send_signal(signal.SIGCONT)
    late = [ok for at, ok in outcomes if at > 17]  # 10 s to the ping, 5 s for its answer, 2 s for a last deadline
    assert late and all(late), outcomes
