"""An agent loop that offers the hosted models to an LLM as tools and runs the tool calls it makes.

THE "LLM" IN THIS EXAMPLE IS A SCRIPTED STAND-IN (ScriptedLLM). It chooses tools by fixed rules, so
the example runs without network access or an API key, but it speaks the OpenAI chat format: it
receives the tool definitions and the messages, and answers with ``tool_calls`` or a final text.
To use a real model, replace ``ScriptedLLM.respond`` with a call to your chat API, passing
``tools=adapter.tools()``; the rest of the loop stays as it is.

    python clients/examples/agent_loop.py --target 127.0.0.1:50051
    python clients/examples/agent_loop.py "wake me up at seven" "what's the capital of peru"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from trm_client import TRMClient, TRMError
from trm_client.connection_args import add_connection_arguments, checked_client_settings, connection_hint_for
from trm_client.console import run_console_program
from trm_client.tools import ToolAdapter

Message = dict[str, Any]
DEFAULT_REQUESTS = (
    "wake me up at seven tomorrow",
    "what is the meaning of life, the universe and everything",
)
SYSTEM_PROMPT = (
    "You are an assistant. Use the classification tools for quick, cheap answers; when a tool says "
    "defer_to_llm, reason about the request yourself."
)
_GRID_INPUT = re.compile(r"^[0-9.]{16,}$")


class ScriptedLLM:
    """A SCRIPTED STAND-IN for an LLM: fixed rules, no model, no network.

    It calls the preferred text tool (or the first grid tool for a grid-looking request) once, then
    answers from the tool's result, or says it would reason itself when the tool defers.
    """

    def __init__(self, preferred_tool: str) -> None:
        self.preferred_tool = preferred_tool

    def respond(self, messages: list[Message], tools: list[dict[str, Any]]) -> Message:
        """The next assistant message: a tool call after a user turn, a final answer after a tool turn."""
        last = messages[-1]
        if last["role"] == "user":
            name, arguments = self._choose_tool(last["content"], tools)
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        result = json.loads(last["content"])
        if result.get("defer_to_llm"):
            why = result.get("defer_reason") or result.get("error", {}).get("code", "unknown")
            text = f"[scripted stand-in] The tool deferred ({why}); a real LLM would now answer this itself."
        else:
            text = f"[scripted stand-in] Answer: {result['answer']} (confidence {result['confidence']})."
        return {"role": "assistant", "content": text}

    def _choose_tool(self, request: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        by_input = {next(iter(t["function"]["parameters"]["required"])): t["function"]["name"] for t in tools}
        if _GRID_INPUT.match(request) and "grid" in by_input:
            return by_input["grid"], {"grid": request}
        name = self.preferred_tool
        parameters = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == name)
        top_k = {"top_k": 3} if "top_k" in parameters["properties"] else {}  # a sequence tool has no top_k
        return name, {"text": request, **top_k}


def run_agent(adapter: ToolAdapter, llm: ScriptedLLM, request: str) -> list[Message]:
    """One user request through the loop: ask the LLM, run its tool calls, until it answers in text."""
    tools = adapter.tools()
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": request},
    ]
    while True:
        reply = llm.respond(messages, tools)
        messages.append(reply)
        if not reply.get("tool_calls"):
            return messages
        for call in reply["tool_calls"]:
            content = adapter.call_tool(call["function"]["name"], call["function"]["arguments"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})


def print_transcript(messages: list[Message]) -> None:
    """Prints the conversation, tool calls and tool results included."""
    for message in messages[1:]:
        if message["role"] == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                print(f"assistant -> {call['function']['name']}({call['function']['arguments']})")
        else:
            print(f"{message['role']:>9}: {message['content']}")
    print()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("requests", nargs="*", default=list(DEFAULT_REQUESTS), help="user requests to run")
    parser.add_argument(
        "--tool", default="trm_intent_clinc150", help="the tool the stand-in prefers for text"
    )
    return run_console_program(lambda: _run(parser, parser.parse_args(argv)))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The agent loop with the parsed arguments; its exit status (an error is told on stderr)."""
    settings = checked_client_settings(parser, args)
    try:
        with TRMClient(**settings) as client:
            adapter = ToolAdapter(client)
            tools = adapter.tools()
            names = [tool["function"]["name"] for tool in tools]
            if args.tool not in names:
                print(f"agent_loop: --tool {args.tool!r} is not offered here; choose one of {', '.join(names)}",
                      file=sys.stderr)
                return 1
            print("tools offered to the LLM:")
            for tool in tools:
                print(f"  {tool['function']['name']}: {tool['function']['description'][:100]}...")
            print()
            llm = ScriptedLLM(args.tool)
            for request in args.requests:
                print_transcript(run_agent(adapter, llm, request))
    except TRMError as error:  # listing the tools failed, e.g. no server at --target
        print(f"agent_loop: {error}{connection_hint_for(args, settings)(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
