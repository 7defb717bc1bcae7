"""LLM tool adapters: tool definitions from ListModels, and call_tool that runs one against the service."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from trm_client.aio_client import AsyncTRMClient
from trm_client.client import TRMClient
from trm_client.errors import ClientClosed, DeadlineExceeded, TRMError
from trm_client.field_names import TOOL_ARGUMENTS, rename_fields
from trm_client.model_info import ModelInfo
from trm_client.tool_arguments import parse_arguments, reason_kwargs
from trm_client.tool_result import error_payload, tool_payload
from trm_client.tool_schema import openai_tool, tool_names

Arguments = Mapping[str, Any] | str | None


def newest_per_model(infos: Iterable[ModelInfo]) -> list[ModelInfo]:
    """One entry per model name: its newest loaded version (ListModels may also list older ones)."""
    chosen: dict[str, ModelInfo] = {}
    for info in infos:
        current = chosen.get(info.name)
        if current is None or (info.versions and info.version == info.versions[0]):
            chosen[info.name] = info
    return list(chosen.values())


def to_json(payload: Mapping[str, Any]) -> str:
    """Compact JSON for an LLM's context window."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def service_error_payload(error: TRMError) -> dict[str, Any]:
    """A failed call as the LLM reads it: the status and the server's message in the tool's argument names; a
    request over the server's message size is the LLM's to shorten (gRPC calls it RESOURCE_EXHAUSTED, which reads
    as "retry later"); a call the client's own deadline ended says so (gRPC says "Deadline Exceeded" alone)."""
    if isinstance(error, DeadlineExceeded) and error.details == "Deadline Exceeded":
        return error_payload(error.code.name, "the service did not answer within this client's timeout (the host's "
                             "setting, e.g. trm-mcp --timeout): the service is busy or unreachable; answer yourself, "
                             "or retry later with a smaller max_steps", error.request_id)
    if error.over_message_limit:
        size = error.details.removeprefix("SERVER: ").removeprefix("Received ")
        return error_payload("INVALID_ARGUMENTS", f"the arguments are too large for the server ({size}): send a "
                                                  "shorter text", error.request_id)
    return error_payload(error.code.name, rename_fields(error.details, TOOL_ARGUMENTS), error.request_id)


class ModelCatalog:
    """ModelInfo cached by tool name (from ListModels) and by exact (model, version) (for thresholds).

    A model's tool name depends on the other hosted models' (`tool_names` hashes names that would clash), so a
    reload that adds or removes another model can rename it; a host keeps the list it was given until it lists again
    (`trm-mcp` tells it to within seconds, where `--watch-tools` is not 0; other hosts may never), so the names a model
    was listed under before still reach it while it is hosted, unless another model's tool now has that name."""

    def __init__(self) -> None:
        self._by_tool: dict[str, ModelInfo] = {}
        self._tool_names: dict[str, str] = {}
        self._listed_before: dict[str, str] = {}  # an earlier tool name -> its model's name
        self._by_version: dict[tuple[str, str], ModelInfo] = {}

    def replace(self, infos: Iterable[ModelInfo]) -> list[ModelInfo]:
        """Takes a fresh ListModels answer; returns the newest version of each model."""
        newest = newest_per_model(infos)
        earlier = {**self._listed_before, **{tool: model for model, tool in self._tool_names.items()}}
        self._tool_names = tool_names(info.name for info in newest)
        self._by_tool = {self._tool_names[info.name]: info for info in newest}
        self._listed_before = {tool: model for tool, model in earlier.items()
                               if model in self._tool_names and tool not in self._by_tool}
        for info in newest:
            self.remember(info)
        return newest

    def tool_name(self, model: str) -> str:
        """The tool name of a listed model (`tool_schema.tool_names`)."""
        return self._tool_names[model]

    def remember(self, info: ModelInfo) -> None:
        """Caches one exact model version."""
        self._by_version[(info.name, info.version)] = info

    def for_tool(self, name: str) -> ModelInfo | None:
        """The model behind a tool name, if it was listed (now, or before for a model still hosted)."""
        if name in self._by_tool or name not in self._listed_before:
            return self._by_tool.get(name)
        return self._by_tool[self._tool_names[self._listed_before[name]]]

    def unknown_tool(self, name: str) -> dict[str, Any]:
        """The error payload of a call to a tool not listed, naming those that are."""
        listed = ", ".join(sorted(self._by_tool)) or "none (the service hosts no model)"
        return error_payload("UNKNOWN_TOOL", f"no tool named {name[:80]!r}; the tools are: {listed}")

    def for_version(self, model: str, version: str) -> ModelInfo | None:
        """A cached exact version, if any."""
        return self._by_version.get((model, version))


class ToolAdapter:
    """Offers every hosted model to an LLM as a tool, and runs the tool calls the LLM makes.

    ``call_tool`` never raises for a failed call: unknown tools, invalid arguments and service
    errors come back as ``{"error": {...}, "defer_to_llm": true}`` so the agent can carry on.
    """

    def __init__(self, client: TRMClient) -> None:
        self._client = client
        self._catalog = ModelCatalog()

    def model_infos(self) -> list[ModelInfo]:
        """Lists the hosted models again (newest version of each) and caches them."""
        return self._catalog.replace(self._client.models())

    def tools(self) -> list[dict[str, Any]]:
        """OpenAI function-calling tool definitions, one per hosted model."""
        return [openai_tool(info, self._catalog.tool_name(info.name)) for info in self.model_infos()]

    def invoke(self, name: str, arguments: Arguments) -> dict[str, Any]:
        """Runs one tool call and returns the compact answer as a dict."""
        try:
            info = self._catalog.for_tool(name) or self._find_after_refresh(name)
            if info is None:
                return self._catalog.unknown_tool(name)
            kwargs = reason_kwargs(parse_arguments(info, arguments))
            result = self._client.reason(info.name, **kwargs)
            return tool_payload(self._versioned(info, result.model_version), result)
        except ClientClosed:  # the host's mistake, not the LLM's: raised as a call on a closed file would be
            raise
        except ValueError as error:  # ToolArgumentError, or an input the SDK cannot send (half a character)
            return error_payload("INVALID_ARGUMENTS", str(error))
        except TRMError as error:
            return service_error_payload(error)

    def call_tool(self, name: str, arguments: Arguments) -> str:
        """Runs one tool call and returns compact JSON for the LLM."""
        return to_json(self.invoke(name, arguments))

    def _find_after_refresh(self, name: str) -> ModelInfo | None:
        self.model_infos()
        return self._catalog.for_tool(name)

    def _versioned(self, listed: ModelInfo, version: str) -> ModelInfo:
        """The description of the version that answered; the listed version's where GetModel cannot give it (a
        reload retired it after it answered, or the service went away): the answer stands, judged by the listed
        version's thresholds."""
        info = self._catalog.for_version(listed.name, version)
        if info is None:
            try:
                info = self._client.model(listed.name, version)
            except TRMError:
                return listed
            self._catalog.remember(info)
        return info


class AsyncToolAdapter:
    """The asyncio twin of ToolAdapter, over an AsyncTRMClient."""

    def __init__(self, client: AsyncTRMClient) -> None:
        self._client = client
        self._catalog = ModelCatalog()

    async def model_infos(self) -> list[ModelInfo]:
        """Lists the hosted models again (newest version of each) and caches them."""
        return self._catalog.replace(await self._client.models())

    def tool_name(self, model: str) -> str:
        """The tool name of a model the last `model_infos` listed."""
        return self._catalog.tool_name(model)

    async def tools(self) -> list[dict[str, Any]]:
        """OpenAI function-calling tool definitions, one per hosted model."""
        return [openai_tool(info, self._catalog.tool_name(info.name)) for info in await self.model_infos()]

    async def invoke(self, name: str, arguments: Arguments) -> dict[str, Any]:
        """Runs one tool call and returns the compact answer as a dict."""
        try:
            info = self._catalog.for_tool(name) or await self._find_after_refresh(name)
            if info is None:
                return self._catalog.unknown_tool(name)
            kwargs = reason_kwargs(parse_arguments(info, arguments))
            result = await self._client.reason(info.name, **kwargs)
            return tool_payload(await self._versioned(info, result.model_version), result)
        except ClientClosed:  # the host's mistake, not the LLM's: raised as a call on a closed file would be
            raise
        except ValueError as error:  # ToolArgumentError, or an input the SDK cannot send (half a character)
            return error_payload("INVALID_ARGUMENTS", str(error))
        except TRMError as error:
            return service_error_payload(error)

    async def call_tool(self, name: str, arguments: Arguments) -> str:
        """Runs one tool call and returns compact JSON for the LLM."""
        return to_json(await self.invoke(name, arguments))

    async def _find_after_refresh(self, name: str) -> ModelInfo | None:
        await self.model_infos()
        return self._catalog.for_tool(name)

    async def _versioned(self, listed: ModelInfo, version: str) -> ModelInfo:
        """The description of the version that answered; the listed version's where GetModel cannot give it (a
        reload retired it after it answered, or the service went away): the answer stands, judged by the listed
        version's thresholds."""
        info = self._catalog.for_version(listed.name, version)
        if info is None:
            try:
                info = await self._client.model(listed.name, version)
            except TRMError:
                return listed
            self._catalog.remember(info)
        return info
