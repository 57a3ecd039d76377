"""The built-in offline model answers deterministically, streams word by word,
uses the file tools it is offered, and fills structured output."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from pydantic_ai import Agent, FunctionToolset, PartDeltaEvent, PartStartEvent
from pydantic_ai.messages import TextPart, TextPartDelta, ToolCallPart

from agents.factory import TurnDeps, build_agent
from agents.offline import OFFLINE_MODEL_NAME, example_for_schema, offline_model


@pytest.fixture
def file_tools():
    """The four read-only file tools by name, recording the calls they get."""
    calls: list[tuple[str, dict]] = []
    toolset = FunctionToolset()

    @toolset.tool_plain
    def list_directory(path: str = ".") -> dict:
        calls.append(("list_directory", {"path": path}))
        return {
            "path": path,
            "entries": [
                {"name": "README.md", "type": "file", "size": 12},
                {"name": "src", "type": "directory"},
            ],
            "truncated": False,
        }

    @toolset.tool_plain
    def read_file(path: str, offset: int = 0, limit: int | None = None) -> dict:
        calls.append(("read_file", {"path": path}))
        return {
            "path": path,
            "content": "# Demo\nHello from the file.",
            "truncated": False,
        }

    @toolset.tool_plain
    def grep_search(pattern: str, path: str = ".", ignore_case: bool = False) -> dict:
        calls.append(("grep_search", {"pattern": pattern, "path": path}))
        return {
            "matches": [{"path": "src/app.py", "line": 3, "text": "# TODO: tidy"}],
            "truncated": False,
        }

    @toolset.tool_plain
    def find_files(pattern: str, path: str = ".") -> dict:
        calls.append(("find_files", {"pattern": pattern, "path": path}))
        return {"files": ["src/app.py"], "truncated": False}

    return toolset, calls


async def stream(agent: Agent, prompt: str, **kwargs):
    async with agent.run_stream_events(prompt, **kwargs) as events:
        collected = [event async for event in events]
        return collected, events.result


async def test_streams_its_answer_word_by_word():
    agent = Agent(offline_model())
    events, result = await stream(agent, "Hello there, who are you?")
    pieces = [
        e.part.content if isinstance(e, PartStartEvent) else e.delta.content_delta
        for e in events
        if (isinstance(e, PartStartEvent) and isinstance(e.part, TextPart))
        or (isinstance(e, PartDeltaEvent) and isinstance(e.delta, TextPartDelta))
    ]
    assert len(pieces) == len(result.output.split()) > 20
    assert "".join(pieces) == result.output
    assert all(len(piece.split()) == 1 for piece in pieces)
    assert "Hello there, who are you?" in result.output
    assert "AGENTRY_DEFAULT_MODEL" in result.output
    assert result.usage.requests == 1
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 20
    assert result.response.model_name == OFFLINE_MODEL_NAME


async def test_is_deterministic_streamed_or_not():
    agent = Agent(offline_model())
    first = await agent.run("same question")
    second = await agent.run("same question")
    _, streamed = await stream(agent, "same question")
    assert first.output == second.output == streamed.output


@pytest.mark.parametrize(
    ("prompt", "tool", "args"),
    [
        ("list the files", "list_directory", {"path": "."}),
        ("What files are in src?", "list_directory", {"path": "src"}),
        ("please read README.md", "read_file", {"path": "README.md"}),
        ("show me docs/guide.txt", "read_file", {"path": "docs/guide.txt"}),
        ("search for TODO", "grep_search", {"pattern": "TODO", "path": "."}),
        (
            "search for 'def main' in src",
            "grep_search",
            {"pattern": "def main", "path": "src"},
        ),
        ("find *.py", "find_files", {"pattern": "*.py", "path": "."}),
        (
            "find files named setup.cfg",
            "find_files",
            {"pattern": "setup.cfg", "path": "."},
        ),
    ],
)
async def test_calls_the_matching_tool_then_answers_from_its_result(
    file_tools, prompt, tool, args
):
    toolset, calls = file_tools
    events, result = await stream(Agent(offline_model()), prompt, toolsets=[toolset])
    assert calls == [(tool, args)]
    assert any(type(e).__name__ == "FunctionToolResultEvent" for e in events)
    assert f"`{tool}`" in result.output
    assert result.usage.requests == 2 and result.usage.tool_calls == 1


async def test_quotes_what_the_tools_returned(file_tools):
    toolset, _ = file_tools
    agent = Agent(offline_model(), toolsets=[toolset])
    assert "Hello from the file." in (await agent.run("read README.md")).output
    listing = (await agent.run("list the files")).output
    assert "README.md (12 bytes)" in listing and "src/" in listing
    assert "src/app.py:3: # TODO: tidy" in (await agent.run("grep TODO")).output


async def test_does_not_call_tools_it_is_not_offered(file_tools):
    agent = Agent(offline_model())
    result = await agent.run("read README.md")
    assert not any(
        isinstance(part, ToolCallPart)
        for m in result.all_messages()
        for part in m.parts
    )
    assert "read README.md" in result.output


async def test_names_the_tools_it_has_when_asked_something_else(file_tools):
    toolset, calls = file_tools
    result = await Agent(offline_model(), toolsets=[toolset]).run("How are you today")
    assert calls == []
    assert "`grep_search`" in result.output and "`read_file`" in result.output


async def test_a_failing_tool_is_reported():
    from pydantic_ai import ToolFailed

    toolset = FunctionToolset()

    @toolset.tool_plain
    def read_file(path: str) -> str:
        raise ToolFailed(f"{path} is outside the workspace.")

    result = await Agent(offline_model(), toolsets=[toolset]).run("read ../etc/passwd")
    assert "reported a problem" in result.output
    assert "outside the workspace" in result.output


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 10},
        "priority": {"enum": ["low", "high"]},
        "count": {"type": "integer", "minimum": 3},
        "score": {"type": "number"},
        "done": {"type": "boolean"},
        "due": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "owner": {"$ref": "#/$defs/person"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
    },
    "required": ["title", "priority", "count", "tags", "owner"],
    "$defs": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        }
    },
}


def test_example_values_satisfy_the_schema():
    value = example_for_schema(SCHEMA, hint="Fix the login page")
    Draft202012Validator(SCHEMA).validate(value)
    assert value["title"] == "Fix the lo"
    assert value["count"] == 3 and value["priority"] == "low"
    assert len(value["tags"]) == 2


async def test_structured_output_is_a_dict_satisfying_the_schema():
    agent = build_agent({"model": "offline", "output_schema": SCHEMA})
    _events, result = await stream(
        agent, "Extract: fix the login page", deps=TurnDeps()
    )
    assert type(result.output) is dict
    Draft202012Validator(SCHEMA).validate(result.output)
    assert result.output["title"].startswith("Extract")


async def test_structured_output_after_a_tool_call(file_tools):
    toolset, calls = file_tools
    agent = build_agent({"model": "offline", "output_schema": SCHEMA})
    result = await agent.run("read README.md", toolsets=[toolset])
    assert calls == [("read_file", {"path": "README.md"})]
    Draft202012Validator(SCHEMA).validate(result.output)
