"""More of the reasoning methods' calls taken from gRPC at once than grpc.aio takes by itself.

grpc.aio (1.85) keeps one request for the next call of each method outstanding in gRPC core: when a call
arrives, the event loop turns several times (the request's task ends, the server's loop wakes, starts the
call's task and asks again) before the next call of that method can be taken. Under load each turn is long
(a step's answers are read and sent in one), so calls wait inside gRPC, unseen by the scheduler: at 64
routing callers, 23 of a call's 37 ms (p50) passed before its handler began. `CallAcceptors` keeps `count`
more requests for the method outstanding, each in its own task doing for its call what grpc.aio's own loop
does; calls reach the scheduler sooner and its steps hold more of them (docs/EXPERIMENTS.md, 2026-12-01,
"calls taken from gRPC"). The server runs them for Reason and ReasonStream, whose calls carry one request
each (a ReasonBatch call carries many).

Each method is registered with gRPC core (grpc.aio's registered-method table), which also gives grpc.aio's own
loop one request for it; the refused-call counter notes calls on both paths (RefusedCallCounter.registered).
The acceptors use grpc.aio's internal entry points (`AioServer._make_request_call_future`, `cygrpc._handle_rpc`,
`cygrpc._schedule_rpc_coro`, `cygrpc._MethodResolver`); `entry_points_fit` checks them against the installed
grpcio by building, without running, the coroutines of one call. Where they do not fit, the server runs on
grpc.aio's own request alone and logs `call_acceptors_unavailable`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import structlog
from grpc._cython import cygrpc

from trm_service.observability.grpc_refusals import RefusedCallCounter

_log = structlog.get_logger("trm_service.api")


def entry_points_fit(server: grpc.aio.Server) -> bool:
    """Whether the installed grpcio has the internal entry points the acceptors call, with the arguments
    they pass (built for a method nobody calls, then closed unrun)."""
    try:
        core = server._server  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        method = "/trm.v1.CallAcceptors/Check"
        state = cygrpc.RPCState(core)
        handled = cygrpc._handle_rpc(method, cygrpc._MethodResolver([], {}), (), state, loop, False)
        scheduled = cygrpc._schedule_rpc_coro(handled, state, loop, method)
        scheduled.close()
        handled.close()
        return callable(core._make_request_call_future) and issubclass(cygrpc._RequestCallError, Exception)
    except (AttributeError, TypeError):
        return False


class CallAcceptors:
    """`count` extra outstanding requests for each of some unary-request methods of a grpc.aio server."""

    def __init__(
        self, server: grpc.aio.Server, handlers: RefusedCallCounter, methods: tuple[str, ...], count: int
    ) -> None:
        self._server = server
        self._handlers = handlers
        self._methods = methods
        self._count = count
        self._acceptors: set[asyncio.Task[None]] = set()
        self._calls: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> int:
        """Acceptor tasks taking calls now, all methods together (0 where grpc.aio's own request serves each
        method alone)."""
        return len(self._acceptors)

    def register(self) -> bool:
        """Before the server starts: register the methods with gRPC core if the acceptors can run here; return
        whether they can."""
        if self._count == 0:
            return False
        if not entry_points_fit(self._server):
            _log.warning("call_acceptors_unavailable", methods=list(self._methods), grpcio=grpc.__version__,
                         detail="grpc.aio's internal entry points differ; calls are taken one at a time")
            return False
        for method in self._methods:
            service, name = method.strip("/").split("/")
            self._server.add_registered_method_handlers(service, {name: self._handlers.registered(method)})
        return True

    def start(self) -> None:
        """After the server starts: run the acceptor tasks (registered ones only)."""
        loop = asyncio.get_running_loop()
        resolver = cygrpc._MethodResolver([self._handlers], {})  # service() sees each call, as for a generic one
        for method in self._methods:
            for _ in range(self._count):
                task = loop.create_task(self._accept(method, resolver), name=f"acceptor[{method}]")
                _keep_until_done(self._acceptors, task)

    async def _accept(self, method: str, resolver: Any) -> None:
        """Take `method`'s calls one after another until gRPC core stops handing them out (shutdown)."""
        core = self._server._server  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        wire_name = method.encode()
        while True:
            try:
                state = await core._make_request_call_future(wire_name)
            except cygrpc._RequestCallError:  # the server is stopping: gRPC core fails every outstanding request
                return
            call = cygrpc._handle_rpc(method, resolver, (), state, loop, False)
            _keep_until_done(self._calls, loop.create_task(cygrpc._schedule_rpc_coro(call, state, loop, method),
                                                           name="rpc_task"))


def _keep_until_done(tasks: set[asyncio.Task[Any]], task: asyncio.Task[Any]) -> None:
    """Hold a reference to `task` in `tasks` until it ends (the loop holds only a weak one)."""
    tasks.add(task)
    task.add_done_callback(tasks.discard)
