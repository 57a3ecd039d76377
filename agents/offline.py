"""The built-in offline model: a chat that works with no key and no network.

Public surface:
    OFFLINE_MODEL_NAME       "agentry-offline", the name it reports in responses
    offline_model()          the pydantic-ai `Model` (a `FunctionModel`, shared)
    example_for_schema(s)    a plausible value satisfying a JSON Schema

It is what an agent with no model runs on when `AGENTRY_DEFAULT_MODEL` is unset,
so `make run` gives a working product. It is deterministic and streams word by
word like a real model (usage is estimated from the words exchanged):

- Asked to list, read, search or find files, it calls the matching tool the
  agent offers (`list_directory`, `read_file`, `grep_search`, `find_files`),
  then answers from the tool's result, quoting it.
- Asked to "ask the <name> to <task>", it calls the agent's `ask_<name>`
  delegation tool with that task, then quotes the other agent's answer.
- With structured output it calls the output tool with a value built from the
  schema (required properties filled with plausible values by type).
- Otherwise it says what it is, echoes the request and explains how to set a
  real model. See "The offline model" in README.md.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable
from functools import cache
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.tools import ToolDefinition

OFFLINE_MODEL_NAME = "agentry-offline"

#: Characters of a tool result quoted back in the answer.
QUOTE_LIMIT = 1500

_GLOB = re.compile(r"(?<![\w/])([\w./-]*\*[\w./*?-]*)")
_QUOTED = re.compile(r"[\"'`\u201c\u2018](.+?)[\"'`\u201d\u2019]")
_SEARCH = re.compile(
    r"\b(?:(?:search|grep)(?:\s+the\s+\w+)?(?:\s+for)?|look\s+for)\s+(.+?)"
    r"(?:\s+(?:in|under|inside)\s+([\w./-]+))?\s*[.?!]*$",
    re.IGNORECASE,
)
_READ = re.compile(
    r"\b(?:read|show|open|cat|print|display|view)\s+(?:me\s+)?(?:the\s+)?"
    r"(?:file\s+)?[`'\"]?([\w./-]*[\w-]\.[\w]+|[\w.-]*/[\w./-]+)",
    re.IGNORECASE,
)
_LIST = re.compile(
    r"\b(?:list|ls|what(?:'s| is) in|show|which files|what files)\b", re.IGNORECASE
)
_LIST_TARGET = re.compile(
    r"\b(?:files?|director(?:y|ies)|folders?|contents|tree|ls)\b", re.IGNORECASE
)
_WHERE = re.compile(r"\b(?:in|under|of|inside)\s+[`'\"]?([\w./-]+)", re.IGNORECASE)
_FIND = re.compile(
    r"\bfind\s+(?:all\s+)?(?:the\s+)?(?:files?\s+)?(?:named\s+|called\s+|matching\s+)?"
    r"[`'\"]?([\w./*?-]+)",
    re.IGNORECASE,
)
_DELEGATE = re.compile(
    r"\bask\s+(?:the\s+|my\s+|our\s+)?(\w+)\s+(?:to\s+)?(.+?)\s*$", re.IGNORECASE
)
_NOISE_WORDS = {"the", "a", "an", "all", "files", "file", "for", "me", "out", "it"}


@cache
def offline_model() -> FunctionModel:
    """The offline model; stateless, so one instance serves every run."""
    return FunctionModel(
        _respond, stream_function=_stream, model_name=OFFLINE_MODEL_NAME
    )


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[_plan(messages, info)], model_name=OFFLINE_MODEL_NAME)


async def _stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
    from django.conf import settings

    part = _plan(messages, info)
    if isinstance(part, ToolCallPart):
        yield {
            0: DeltaToolCall(
                name=part.tool_name,
                json_args=part.args_as_json_str(),
                tool_call_id=part.tool_call_id,
            )
        }
        return
    # A pause between words makes the demo read like a model typing.
    delay = settings.AGENTRY_OFFLINE_WORD_DELAY
    for i, word in enumerate(_words(part.content)):
        if delay and i:
            await asyncio.sleep(delay)
        yield word


def _words(text: str) -> list[str]:
    """Pieces that join back to `text`: each word with the whitespace after it."""
    return re.findall(r"\S+\s*|\s+", text)


# ---- deciding what to say -------------------------------------------------------


def _plan(messages: list[ModelMessage], info: AgentInfo) -> TextPart | ToolCallPart:
    prompt, results = _since_last_prompt(messages)
    output_tool = info.output_tools[0] if info.output_tools else None
    if not results:
        call = _tool_call_for(prompt, info.function_tools)
        if call is not None:
            return call
    if output_tool is not None and (results or not info.allow_text_output):
        return ToolCallPart(
            output_tool.name,
            example_for_schema(output_tool.parameters_json_schema, hint=prompt),
        )
    if results:
        return TextPart(_answer_from(results))
    return TextPart(_default_reply(prompt, info.function_tools))


def _since_last_prompt(
    messages: list[ModelMessage],
) -> tuple[str, list[ToolReturnPart]]:
    """The last user prompt's text and the tool results that followed it."""
    results: list[ToolReturnPart] = []
    for message in reversed(messages):
        if not isinstance(message, ModelRequest):
            continue
        for part in reversed(message.parts):
            if isinstance(part, UserPromptPart):
                return _prompt_text(part), list(reversed(results))
            if isinstance(part, ToolReturnPart):
                results.append(part)
    return "", list(reversed(results))


def _prompt_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    return " ".join(item for item in part.content if isinstance(item, str))


def _tool_call_for(prompt: str, tools: Iterable[ToolDefinition]) -> ToolCallPart | None:
    offered = {tool.name: tool for tool in tools}
    for name, args in _intents(prompt):
        tool = offered.get(name)
        if tool is None:
            continue
        properties = tool.parameters_json_schema.get("properties", {})
        accepted = {key: value for key, value in args.items() if key in properties}
        required = tool.parameters_json_schema.get("required", [])
        if all(key in accepted for key in required):
            return ToolCallPart(name, accepted)
    return None


def _intents(prompt: str) -> list[tuple[str, dict[str, Any]]]:
    """Tool calls the prompt may be asking for, most specific first."""
    text = " ".join(prompt.split())
    intents: list[tuple[str, dict[str, Any]]] = []
    if delegate := _DELEGATE.search(text):
        intents.append(
            (f"ask_{delegate.group(1).lower()}", {"task": delegate.group(2)})
        )
    where = _WHERE.search(text)
    if (glob := _GLOB.search(text)) or (
        (found := _FIND.search(text)) and found.group(1).lower() not in _NOISE_WORDS
    ):
        match = glob or found
        assert match is not None  # one of the two matched to get here
        pattern = match.group(1)
        args: dict[str, Any] = {"pattern": pattern}
        if where and where.group(1) != pattern:
            args["path"] = where.group(1)
        intents.append(("find_files", args))
    if search := _SEARCH.search(text):
        quoted = _QUOTED.search(search.group(1))
        pattern = quoted.group(1) if quoted else search.group(1).split()[0]
        args = {"pattern": pattern}
        if search.group(2):
            args["path"] = search.group(2)
        intents.append(("grep_search", args))
    if read := _READ.search(text):
        intents.append(("read_file", {"path": read.group(1).rstrip(".")}))
    if (_LIST.search(text) and _LIST_TARGET.search(text)) or re.match(r"\s*ls\b", text):
        path = where.group(1).rstrip(".") if where else "."
        intents.append(("list_directory", {"path": path or "."}))
    return intents


def _answer_from(results: list[ToolReturnPart]) -> str:
    sections = []
    for result in results:
        content = _render(result.content)
        quoted = content[:QUOTE_LIMIT].rstrip()
        more = "\n[...]" if len(content) > QUOTE_LIMIT else ""
        failed = getattr(result, "outcome", "success") not in ("success", None)
        if failed:
            sections.append(
                f"The `{result.tool_name}` tool reported a problem:\n\n{quoted}"
            )
        else:
            sections.append(
                f"Here is what `{result.tool_name}` returned:\n\n```\n{quoted}{more}\n```"
            )
    sections.append(
        "(I'm the offline model, so I can show tool results but not reason about "
        "them; set a real model for that.)"
    )
    return "\n\n".join(sections)


def _render(content: Any) -> str:
    """A tool result as text: file contents as they are, listings one per line."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        text = content.get("content")
        if isinstance(text, str):
            return text
        for key in ("entries", "matches", "files", "results"):
            items = content.get(key)
            if isinstance(items, list):
                lines = [_render_item(item) for item in items] or ["(nothing found)"]
                if content.get("truncated"):
                    lines.append("[... more left out]")
                return "\n".join(lines)
    return json.dumps(content, indent=2, default=str)


def _render_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    if item.get("type") == "directory" and "name" in item:
        return f"{item['name']}/"
    if "name" in item and "size" in item:
        return f"{item['name']} ({item['size']} bytes)"
    if "line" in item and ("text" in item or "content" in item):
        text = item.get("text", item.get("content"))
        return f"{item.get('path', '')}:{item['line']}: {text}"
    return " ".join(str(value) for value in item.values())


def _default_reply(prompt: str, tools: Iterable[ToolDefinition]) -> str:
    excerpt = " ".join(prompt.split())
    if len(excerpt) > 200:
        excerpt = excerpt[:200] + "..."
    names = sorted(tool.name for tool in tools)
    lines = [
        f"You said: “{excerpt}”." if excerpt else "Hello!",
        "",
        f"I'm `{OFFLINE_MODEL_NAME}`, Agentry's built-in offline model. I run inside "
        "the server with no API key and no network, so my answers are canned and "
        "always the same for the same request.",
    ]
    if names:
        lines += [
            "",
            "This agent gives me these tools: "
            + ", ".join(f"`{name}`" for name in names)
            + ". Try “list the files”, “read README.md”, “search for TODO” "
            "or “find *.py”.",
        ]
    lines += [
        "",
        "For real answers, give the agent a model (e.g. `openai:gpt-4o-mini`, "
        "`anthropic:claude-sonnet-4-5`, or `openai-chat:llama3.2` with "
        "`OPENAI_BASE_URL` pointing at Ollama), or set `AGENTRY_DEFAULT_MODEL` "
        "for every agent without one.",
    ]
    return "\n".join(lines)


# ---- structured output ---------------------------------------------------------


def example_for_schema(
    schema: dict[str, Any], *, hint: str = "", root: dict[str, Any] | None = None
) -> Any:
    """A value satisfying `schema`, preferring its own examples, defaults and enums.

    Strings take the `hint` (the user's words) when nothing better is known, so
    an extractor shows something of its input.
    """
    root = root if root is not None else schema
    if not isinstance(schema, dict):
        return None
    if ref := schema.get("$ref"):
        return example_for_schema(_resolve(ref, root), hint=hint, root=root)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_for_schema(options[0], hint=hint, root=root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_for_schema(merged, hint=hint, root=root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: example_for_schema(
                properties[name], hint=_hint_for(name, hint), root=root
            )
            for name in properties
        }
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        item = schema.get("items", {"type": "string"})
        return [example_for_schema(item, hint=hint, root=root) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _example_string(schema, hint)


def _hint_for(name: str, hint: str) -> str:
    return hint or name.replace("_", " ")


def _example_string(schema: dict[str, Any], hint: str) -> str:
    formats = {
        "date": "2025-01-01",
        "date-time": "2025-01-01T00:00:00Z",
        "email": "someone@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    value = formats.get(schema.get("format", ""), " ".join(hint.split()) or "example")
    value = value[: schema.get("maxLength", 200)]
    return value.ljust(schema.get("minLength", 0), ".")


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for key in ref.removeprefix("#/").split("/"):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}
