"""The MCP server, driven by a real MCP client session over stdio, answers tools/list and tools/call."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys

import anyio
import mcp_types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR
from sdk_test_support import BAD_CONNECTION_OPTIONS, GRID_MODEL, SUDOKU, TEXT_MODEL
from trm_client import TRMClient
from trm_client.mcp_server import drain_seconds
from trm_client.mcp_server import main as mcp_server_main
from trm_client.tool_schema import input_schema, output_schema

from trm_service.testing import ServerProcess


async def test_the_host_is_told_when_a_reload_changes_the_tools_it_listed(bundles, tmp_path):
    """QA: listChanged was false: a host kept the tools of the models served before a reload (SIGHUP)."""
    folder = tmp_path / "models"
    shutil.copytree(bundles["text"], folder / "text")
    changes: list[object] = []

    async def on_message(message: object) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            changes.append(message)

    with ServerProcess([folder]) as server:
        watching = mcp_server(server.target)
        watching.args += ["--watch-tools", "0.5"]
        async with (
            stdio_client(watching) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            opened = await session.initialize()
            assert opened.capabilities.tools.list_changed is True
            assert [tool.name for tool in (await session.list_tools()).tools] == ["trm_intent_test"]
            shutil.copytree(bundles["grid"], folder / "grid")
            server.send_signal(signal.SIGHUP)
            with anyio.fail_after(60):
                while not changes:
                    await anyio.sleep(0.1)
            assert {tool.name for tool in (await session.list_tools()).tools} == {"trm_intent_test", "trm_sudoku_test"}
            await anyio.sleep(2)  # nothing changed since the host listed again: no more told
            assert len(changes) == 1
        unwatched = mcp_server(server.target)
        unwatched.args += ["--watch-tools", "0"]
        async with stdio_client(unwatched) as (read, write), ClientSession(read, write) as session:
            assert not (await session.initialize()).capabilities.tools.list_changed


@pytest.mark.parametrize("given", ["abc", "-1", "0.01", "inf", "nan"])
def test_a_watch_interval_it_cannot_take_is_a_usage_error_naming_the_flag(given: str, capsys):
    with pytest.raises(SystemExit) as ended:
        mcp_server_main(["--watch-tools", given])
    assert ended.value.code == 2
    assert f"argument --watch-tools: must be 0 (never) or 0.1 to 86400 seconds, got {given}" in capsys.readouterr().err


def mcp_server(target: str) -> StdioServerParameters:
    # The whole environment (the SDK passes only a few variables by default), so that the server
    # runs the same trm_client as this test even when PYTHONPATH points at a working copy.
    return StdioServerParameters(
        command=sys.executable, args=["-m", "trm_client.mcp_server", "--target", target], env=dict(os.environ)
    )


async def test_tools_list_and_tools_call_over_stdio(server):
    with TRMClient(server.target) as client:
        infos = {info.name: info for info in client.models()}
        direct = client.reason(TEXT_MODEL, "wake me up at seven")
    async with (
        stdio_client(mcp_server(server.target)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == {"trm_intent_test", "trm_sudoku_test"}
        assert listed["trm_intent_test"].input_schema == input_schema(infos[TEXT_MODEL])
        assert listed["trm_sudoku_test"].input_schema == input_schema(infos[GRID_MODEL])
        # the SDK's client checks each structured result below against these
        assert listed["trm_intent_test"].output_schema == output_schema(infos[TEXT_MODEL])
        assert listed["trm_sudoku_test"].output_schema == output_schema(infos[GRID_MODEL])

        text = await session.call_tool("trm_intent_test", {"text": "wake me up at seven"})
        assert not text.is_error
        reply = json.loads(text.content[0].text)
        assert reply == text.structured_content
        assert reply["answer"] == direct.prediction
        assert reply["steps"] == direct.steps
        assert isinstance(reply["defer_to_llm"], bool)

        grid = await session.call_tool("trm_sudoku_test", {"grid": SUDOKU})
        assert len(json.loads(grid.content[0].text)["answer"]) == 9

        # JSON Schema counts 2.0 as an integer, so the call goes through as top_k=2.
        floats = await session.call_tool("trm_intent_test", {"text": "wake me up at seven", "top_k": 2.0})
        assert not floats.is_error
        assert len(json.loads(floats.content[0].text)["alternatives"]) == 1

        bad = await session.call_tool("trm_intent_test", {"text": "hi", "top_k": 0})
        assert bad.is_error
        assert json.loads(bad.content[0].text)["error"]["code"] == "INVALID_ARGUMENTS"

        # A bad grid is told in the server's words (which cell, which rule), not as the schema's pattern.
        bad_grid = await session.call_tool("trm_sudoku_test", {"grid": "x" + SUDOKU[1:]})
        assert bad_grid.is_error
        error = json.loads(bad_grid.content[0].text)["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert error["message"].startswith("cell 0 of grid (row 1, column 1) is 'x': use one of")
        assert error["request_id"]


@pytest.mark.parametrize(("arguments", "told"), BAD_CONNECTION_OPTIONS)
def test_bad_options_end_in_a_usage_error_naming_the_flag(arguments, told):
    done = subprocess.run([sys.executable, "-m", "trm_client.mcp_server", *arguments], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"trm-mcp: error: {told}" in done.stderr
    assert "Traceback" not in done.stderr


async def test_tools_list_with_the_service_down_is_a_json_rpc_internal_error():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = f"127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there once the probe closes
    parameters = mcp_server(closed)
    parameters.args += ["--retries", "1"]
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        with pytest.raises(MCPError) as caught:
            await session.list_tools()
    assert caught.value.code == INTERNAL_ERROR
    assert caught.value.message.startswith("the reasoning service: UNAVAILABLE: ")


def exchange(process: subprocess.Popen, line: str) -> dict:
    """Writes one line to the MCP server and reads its reply (a reply within 30 s, or the test fails)."""
    process.stdin.write(line + "\n")
    process.stdin.flush()
    replied, _, _ = select.select([process.stdout], [], [], 30)
    assert replied, f"no reply to {line!r}"
    return json.loads(process.stdout.readline())


def stdio_process(target: str, *options: str, stderr: int | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trm_client.mcp_server", "--target", target, *options],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=dict(os.environ))


def call_held_by(silent: socket.socket, process: subprocess.Popen) -> socket.socket:
    """Opens the session and sends tool call 2, which reaches `silent` (a service that accepts connections and never
    answers) and stays in flight there; returns that connection."""
    assert exchange(process, request(1, "initialize", HELLO))["id"] == 1
    process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    process.stdin.write(request(2, "tools/call", {"name": "trm_intent_test", "arguments": {"text": "hi"}}) + "\n")
    process.stdin.flush()
    silent.settimeout(30)
    return silent.accept()[0]


def end(process: subprocess.Popen) -> None:
    """Closes the server's stdin, as a host does, and waits for it to exit (status 0)."""
    process.stdin.close()
    try:
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0


def request(request_id: int, method: str, params: dict | None = None) -> str:
    """A JSON-RPC request's line."""
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method} | ({"params": params} if params else {}))


HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}


def test_a_line_the_sdk_cannot_parse_gets_a_json_rpc_error_and_the_server_goes_on(server):
    """The MCP SDK drops such lines without a reply (a host would wait for that id forever)."""
    process = stdio_process(server.target)
    try:
        assert exchange(process, request(1, "initialize", HELLO))["id"] == 1
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        call = ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", '
                '"params": {"name": "trm_intent_test", "arguments": {"text": "hi \\ud800"}}}')
        surrogate = exchange(process, call)
        assert surrogate["id"] == 2 and surrogate["error"]["code"] == PARSE_ERROR
        assert "lone surrogate" in surrogate["error"]["message"]
        half_id = exchange(process, '{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}')  # QA: it ended trm-mcp
        assert half_id["id"] is None and half_id["error"]["code"] == PARSE_ERROR
        assert exchange(process, request(3, "ping"))["id"] == 3  # and the server goes on
        garbage = exchange(process, "{not json")
        assert garbage["id"] is None and garbage["error"]["code"] == PARSE_ERROR
        no_method = exchange(process, '{"jsonrpc": "2.0", "id": "three"}')
        assert no_method["id"] == "three" and no_method["error"]["code"] == INVALID_REQUEST
        null_id = exchange(process, '{"jsonrpc": "2.0", "id": null, "method": "tools/list"}')  # read as a notification
        assert null_id["id"] is None and null_id["error"]["code"] == INVALID_REQUEST
        assert null_id["error"]["message"].startswith("Invalid request: id is null; a request's id is a string or")
        for odd_id in ("1.5", "true", "[1]", '{"a": 1}'):
            refused = exchange(process, f'{{"jsonrpc": "2.0", "id": {odd_id}, "method": "ping"}}')
            assert refused["id"] is None and refused["error"]["code"] == INVALID_REQUEST
            assert refused["error"]["message"].startswith(f"Invalid request: id is {odd_id}; ")
        assert exchange(process, '{"jsonrpc": "2.0", "id": 7.0, "method": "ping"}') == {
            "jsonrpc": "2.0", "id": 7, "result": {}}  # a float-only JSON writer's integer
        as_string = exchange(process, '{"jsonrpc": "2.0", "id": 5, "method": "tools/call", '
                             '"params": {"name": "trm_intent_test", "arguments": "{\\"text\\": \\"hi\\"}"}}')
        assert as_string["id"] == 5 and as_string["error"]["code"] == INVALID_PARAMS
        assert as_string["error"]["message"].startswith("Invalid params of tools/call: arguments: Input should be a "
                                                        "valid dictionary")
        no_name = exchange(process, '{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"arguments": {}}}')
        assert no_name["error"]["message"].startswith("Invalid params of tools/call: name: Field required")
        assert exchange(process, request(4, "ping")) == {"jsonrpc": "2.0", "id": 4, "result": {}}
    finally:
        end(process)


def test_a_request_before_initialize_is_told_to_initialize_first(server):
    """The SDK refuses it, and an initialize it cannot read, as "Invalid request parameters" alone."""
    process = stdio_process(server.target)
    try:
        early = exchange(process, request(1, "tools/list"))
        assert early["id"] == 1 and early["error"]["code"] == INVALID_PARAMS
        assert early["error"]["message"].startswith("tools/list before initialize: the session is not initialized: "
                                                    "send the initialize request first")
        unserved = exchange(process, request(2, "resources/list"))
        assert unserved["error"]["code"] == METHOD_NOT_FOUND  # the SDK's answer, as after initialize
        assert exchange(process, request(3, "ping")) == {"jsonrpc": "2.0", "id": 3, "result": {}}
        unreadable = exchange(process, request(4, "initialize", {"capabilities": {}}))
        assert unreadable["error"]["code"] == INVALID_PARAMS
        assert unreadable["error"]["message"].startswith(
            "Invalid params of initialize: protocolVersion: Field required; clientInfo: Field required (params are {")
        call = {"name": "trm_intent_test", "arguments": {"text": "hi"}}
        still_early = exchange(process, request(5, "tools/call", call))
        assert still_early["error"]["message"].startswith("tools/call before initialize")
        hello = exchange(process, request(6, "initialize", HELLO))
        assert hello["id"] == 6 and "result" in hello
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        listed = exchange(process, request(7, "tools/list"))
        assert {tool["name"] for tool in listed["result"]["tools"]} == {"trm_intent_test", "trm_sudoku_test"}
    finally:
        end(process)


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
               "io.modelcontextprotocol/clientCapabilities": {}}


def test_a_client_of_the_sessionless_revision_is_served_without_initialize(server):
    """QA: MCP 2026-07-28 has no initialize (server/discover, then requests whose _meta names the version); every such
    request was refused as sent before initialize, though the SDK serves it."""
    process = stdio_process(server.target)
    try:
        discovered = exchange(process, request(1, "server/discover", {"_meta": MODERN_META}))
        assert "2026-07-28" in discovered["result"]["supportedVersions"]
        assert discovered["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "trm-mcp"
        listed = exchange(process, request(2, "tools/list", {"_meta": MODERN_META}))
        tools = {tool["name"]: tool for tool in listed["result"]["tools"]}
        assert tools["trm_intent_test"]["annotations"]["readOnlyHint"] is True
        call = {"name": "trm_intent_test", "arguments": {"text": "wake me up at seven"}, "_meta": MODERN_META}
        answered = exchange(process, request(3, "tools/call", call))
        assert answered["result"]["structuredContent"]["model"] == TEXT_MODEL
    finally:
        end(process)


def test_an_unknown_tool_is_a_protocol_error_naming_the_tools_and_a_byte_order_mark_is_read_past(server):
    process = stdio_process(server.target)
    try:
        hello = exchange(process, "\ufeff" + request(1, "initialize", HELLO))  # QA: a parse error
        assert hello["result"]["serverInfo"]["name"] == "trm-mcp"
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        unknown = exchange(process, request(2, "tools/call", {"name": "trm_nope", "arguments": {"text": "hi"}}))
        assert unknown["error"]["code"] == INVALID_PARAMS
        assert unknown["error"]["message"] == ("no tool named 'trm_nope'; the tools are: trm_intent_test, "
                                               "trm_sudoku_test")
    finally:
        end(process)


def test_a_host_that_leaves_with_a_reply_pending_ends_the_server_without_a_traceback():
    """QA: both pipes closed while a call was in flight: status 1 and a BrokenPipeError traceback on stderr."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        process = stdio_process(f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "2", stderr=subprocess.PIPE)
        try:
            with call_held_by(silent, process):
                process.stdout.close()
                process.stdin.close()
                assert process.wait(timeout=60) == 1
                assert process.stderr.read() == ""
        finally:
            process.kill()


@pytest.mark.parametrize(("timeout_s", "drain_s"), [(10.0, 11.0), (None, 61.0), (float("inf"), 61.0), (1e9, 61.0)])
def test_requests_in_flight_at_the_end_of_stdin_wait_the_clients_timeout_at_most(timeout_s, drain_s):
    """QA: with `--timeout inf` the server waited for a hung service forever after the host closed stdin."""
    assert drain_seconds(timeout_s) == drain_s


def test_ctrl_c_stops_the_server_with_status_130_and_no_traceback(server):
    """Interrupted while it waits for the host's next line, after a first exchange."""
    argv = ["trm-mcp", "--target", server.target]
    command = [sys.executable, "-c", (  # Ctrl-C as a terminal delivers it, also where pytest runs in the background
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = {argv!r}; runpy.run_module('trm_client.mcp_server', run_name='__main__')"
    )]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ)) as process:
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}) + "\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["id"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert process.stderr.read() == ""


def test_a_tool_call_the_host_cancels_ends_and_the_server_goes_on():
    """A host cancels a call its user stops (notifications/cancelled): the server drops that call and answers the
    next request. Its service here accepts the connection and never answers, so the call is in flight."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        process = stdio_process(f"127.0.0.1:{silent.getsockname()[1]}")
        try:
            with call_held_by(silent, process):
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
                process.stdin.write(json.dumps(cancel) + "\n")
                assert exchange(process, request(3, "ping")) == {"jsonrpc": "2.0", "id": 3, "result": {}}
        finally:
            end(process)


def test_requests_written_before_the_host_closes_stdin_are_all_answered(server):
    """A host (or a script) that writes its requests and closes the pipe: the SDK ends its session at the end of its
    input and cancelled the calls still running, so some got "Connection closed" and some no reply at all."""
    process = stdio_process(server.target)
    calls = [request(3 + index, "tools/call", {"name": "trm_intent_test", "arguments": {"text": f"play song {index}"}})
             for index in range(6)]
    hello = [request(1, "initialize", HELLO), json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
             request(2, "tools/list")]
    try:
        process.stdin.write("\n".join([*hello, *calls, request(9, "ping")]) + "\n")
        process.stdin.close()
        replies = [json.loads(line) for line in process.stdout.read().splitlines()]
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert sorted(reply["id"] for reply in replies) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all("result" in reply for reply in replies), [reply for reply in replies if "error" in reply]
