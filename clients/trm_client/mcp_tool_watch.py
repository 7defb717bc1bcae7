"""MCP's `listChanged` for ``trm-mcp``: the host is told when the tools it listed are no longer the service's.

The service adds, replaces and retires models on a reload (SIGHUP), and an MCP host keeps the tool list it got.
After each tools/list the service's models are listed again every `interval_s`; once the tools they make differ
from the ones the host got, one `notifications/tools/list_changed` goes out, and the next only after the host
lists again. Sent only in a session opened by `initialize`: the 2026-07-28 revision, which has none, delivers
change notifications only on a `subscriptions/listen` stream, which trm-mcp does not serve.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import mcp_types as types
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.message import SessionMessage

from trm_client.errors import TRMError

WATCH_INTERVAL_S = 5.0
LIST_CHANGED = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/tools/list_changed")


class ToolListWatch:
    """Compares the tools `tools_now()` makes with those the host last listed (`listed`), while `session_open()`."""

    def __init__(self, tools_now: Callable[[], Awaitable[list[types.Tool]]], session_open: Callable[[], bool],
                 interval_s: float = WATCH_INTERVAL_S) -> None:
        self._tools_now, self._session_open, self._interval_s = tools_now, session_open, interval_s
        self._listed: list[str] | None = None  # the tools the host got, as JSON; None: told, or never listed

    def listed(self, tools: list[types.Tool]) -> None:
        """The host got `tools` (a tools/list answer)."""
        self._listed = _as_json(tools)

    async def run(self, host: WriteStream[SessionMessage]) -> None:
        """Tell `host` each change, until cancelled; a service out of reach is not a change (its calls say so)."""
        while True:
            await anyio.sleep(self._interval_s)
            if self._listed is None or not self._session_open():
                continue
            try:
                now = _as_json(await self._tools_now())
            except TRMError:
                continue
            if self._listed is not None and now != self._listed:
                self._listed = None
                await host.send(SessionMessage(LIST_CHANGED))


def _as_json(tools: list[types.Tool]) -> list[str]:
    return sorted(tool.model_dump_json() for tool in tools)
