"""An MCP server over stdio that offers each model hosted by the service as a tool (``trm-mcp``).

Needs the ``mcp`` extra. An MCP host starts it as a subprocess, e.g.
``{"command": "trm-mcp", "args": ["--target", "127.0.0.1:50051"]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import anyio
import grpc
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from trm_client.aio_client import AsyncTRMClient
from trm_client.connection_args import add_connection_arguments, checked_client_settings, connection_hint_for
from trm_client.console import EXIT_ERROR, EXIT_INTERRUPTED, discard_the_rest
from trm_client.errors import TRMError, Unavailable
from trm_client.mcp_lines import AnsweredLines
from trm_client.mcp_tool_watch import WATCH_INTERVAL_S, ToolListWatch
from trm_client.retry import checked_timeout
from trm_client.tool_schema import input_schema, output_schema, tool_description
from trm_client.tools import AsyncToolAdapter, to_json

# A tool call reads the model and changes nothing; the same arguments give the same answer; no world outside.
READ_ONLY = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                  open_world_hint=False)
DRAIN_WITHOUT_DEADLINE_S = 60.0  # how long the requests of a client without a deadline may still be answered at the end

INSTRUCTIONS = (
    "Each tool runs a tiny recursive model on the reasoning co-processor: intent classification, "
    "document routing, grid puzzles or code written out from dictation, answered in milliseconds. When a "
    "result says defer_to_llm=true the model is unsure, the input is out of its scope or the answer is "
    "incomplete: reason about it yourself."
)


async def hosted_tools(adapter: AsyncToolAdapter) -> list[types.Tool]:
    """A tool for each model the service hosts now (TRMError where it cannot be reached)."""
    return [
        types.Tool(name=adapter.tool_name(i.name), description=tool_description(i), input_schema=input_schema(i),
                   output_schema=output_schema(i), annotations=READ_ONLY)
        for i in await adapter.model_infos()
    ]


def build_server(adapter: AsyncToolAdapter, hint: Callable[[TRMError], str] = lambda error: "",
                 on_listed: Callable[[list[types.Tool]], None] = lambda tools: None) -> Server[Any]:
    """An MCP server whose tools are the hosted models, listed afresh on every tools/list (each list given to
    `on_listed`); `hint` tells the connection option to change where the service cannot be reached
    (`connection_hint`)."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            tools = await hosted_tools(adapter)
        except TRMError as error:  # the service, not the request: a JSON-RPC internal error, not a traceback
            told = f"{error.code.name}: {error.details}{hint(error)} (request_id={error.request_id})"
            raise MCPError(types.INTERNAL_ERROR, f"the reasoning service: {told}") from error
        on_listed(tools)
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        payload = await adapter.invoke(params.name, params.arguments)
        if payload.get("error", {}).get("code") == "UNKNOWN_TOOL":  # a protocol error in MCP, not the tool's
            raise MCPError(types.INVALID_PARAMS, payload["error"]["message"])
        failed = payload.get("error", {})
        if failed.get("code") == "UNAVAILABLE":
            failed["message"] += hint(Unavailable(grpc.StatusCode.UNAVAILABLE, failed["message"], ""))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=to_json(payload))],
            structured_content=payload,
            is_error="error" in payload,
        )

    return Server(
        "trm-mcp",
        version=version("trm-client"),
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


class _NotedReplies:
    """The transport's write stream, telling `lines` of each reply that goes out (`AnsweredLines.answered`)."""

    def __init__(self, stream: WriteStream[SessionMessage], lines: AnsweredLines) -> None:
        self._stream, self._lines = stream, lines

    async def send(self, item: SessionMessage, /) -> None:
        await self._stream.send(item)
        if isinstance(item.message, types.JSONRPCResponse | types.JSONRPCError) and item.message.id is not None:
            self._lines.answered(item.message.id)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> _NotedReplies:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._stream.__aexit__(*exc_info)


def drain_seconds(timeout_s: float | None) -> float:
    """How long the requests in flight when the host closes stdin may still be answered: the client's timeout, or
    DRAIN_WITHOUT_DEADLINE_S without one (None, `inf` or 1e9 and more: QA: `--timeout inf` never exited), and 1 s."""
    return (checked_timeout(timeout_s) or DRAIN_WITHOUT_DEADLINE_S) + 1.0


async def serve(settings: dict[str, Any], hint: Callable[[TRMError], str] = lambda error: "",
                watch_tools_s: float = WATCH_INTERVAL_S) -> None:
    """Serves MCP on stdin/stdout until the host closes the pipe, and the requests it sent are answered (at most
    the client's timeout longer); ``settings`` are AsyncTRMClient's arguments, ``hint`` as build_server's; the
    hosted models are listed every ``watch_tools_s`` for MCP's listChanged (mcp_tool_watch.py; 0: never)."""
    async with AsyncTRMClient(**settings) as client:
        adapter = AsyncToolAdapter(client)
        watch = ToolListWatch(lambda: hosted_tools(adapter), session_open=lambda: lines.session_open,
                              interval_s=watch_tools_s)
        server = build_server(adapter, hint, on_listed=watch.listed)
        lines = AnsweredLines(serves=lambda method: server.get_request_handler(method) is not None,
                              drain_s=drain_seconds(client.timeout_s))
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
            lines.replies = write_stream
            replies = _NotedReplies(write_stream, lines)
            async with anyio.create_task_group() as tasks:
                if watch_tools_s > 0:
                    tasks.start_soon(watch.run, write_stream)
                told = NotificationOptions(tools_changed=watch_tools_s > 0)
                await server.run(read_stream, replies, server.create_initialization_options(told))
                tasks.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """The ``trm-mcp`` program (`console.trm_mcp` runs it)."""
    parser = argparse.ArgumentParser(
        prog="trm-mcp", description="An MCP server over stdio that offers each model the service hosts as a tool.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('trm-client')}")
    add_connection_arguments(parser)
    parser.add_argument("--watch-tools", type=_watch_seconds, default=WATCH_INTERVAL_S, metavar="SECONDS",
                        help="after a tools/list, list the service's models every SECONDS and tell the host when a "
                        f"reload changed its tools (MCP listChanged); 0: never (default {WATCH_INTERVAL_S:g})")
    args = parser.parse_args(argv)
    settings = checked_client_settings(parser, args)
    try:
        asyncio.run(serve(settings, connection_hint_for(args, settings), args.watch_tools))
    except KeyboardInterrupt:  # Ctrl-C, or a host's SIGINT: stop quietly, as trm-client does, without waiting
        sys.stdout.flush()  # for the worker thread still reading stdin (AnsweredLines), which nothing can wake
        os._exit(EXIT_INTERRUPTED)
    except Exception as error:
        if not _only_broken_pipes(error):
            raise
        discard_the_rest()  # the host closed its end with replies still to write: nobody reads them (QA: a traceback)
        sys.exit(EXIT_ERROR)


def _watch_seconds(text: str) -> float:
    """A --watch-tools value: 0, or seconds from 0.1 to a day."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds == 0 or 0.1 <= seconds <= 86400):
        raise argparse.ArgumentTypeError(f"must be 0 (never) or 0.1 to 86400 seconds, got {text}")
    return seconds


def _only_broken_pipes(error: BaseException) -> bool:
    """Whether `error` is a BrokenPipeError, or a group of nothing else (as anyio's task groups raise it)."""
    grouped = getattr(error, "exceptions", None)
    return isinstance(error, BrokenPipeError) or (grouped is not None and all(map(_only_broken_pipes, grouped)))


if __name__ == "__main__":
    main()
