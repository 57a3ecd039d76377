"""The tools driven by a real pydantic-ai Agent: what the model sees and gets back."""

from __future__ import annotations

from pathlib import Path

from pydantic_ai import (
    Agent,
    AgentRunResultEvent,
    FunctionToolResultEvent,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from tools.registry import ToolContext, toolset_for

FILE_TOOLS = [
    {"tool": "read_file", "config": {}},
    {"tool": "write_file", "config": {}},
    {"tool": "list_directory", "config": {}},
    {"tool": "find_files", "config": {}},
    {"tool": "grep_search", "config": {}},
]
CALLS = [
    ("read_file", '{"path": "escape.txt"}'),
    ("read_file", '{"path": "hello.txt"}'),
    ("grep_search", '{"pattern": "--help"}'),
]


def scripted_model(seen: list) -> FunctionModel:
    """Calls every tool of CALLS at once, then answers with what came back."""

    def request(messages, info: AgentInfo) -> ModelResponse:
        raise AssertionError("the runtime streams")

    async def stream(messages, info: AgentInfo):
        if len(messages) == 1:
            seen.append({t.name: t for t in info.function_tools})
            yield {
                i: DeltaToolCall(name=name, json_args=args, tool_call_id=f"call-{i}")
                for i, (name, args) in enumerate(CALLS)
            }
            return
        returns = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        seen.append(returns)
        yield f"{len(returns)} results"

    return FunctionModel(request, stream_function=stream)


async def test_a_refused_call_is_a_failed_result_and_the_run_goes_on(layout, settings):
    toolset = toolset_for(FILE_TOOLS, ToolContext(repo_root=Path(settings.REPO_ROOT)))
    seen: list = []
    agent = Agent(scripted_model(seen), toolsets=[toolset])
    results, output = [], None
    async with agent.run_stream_events("look around") as events:
        async for event in events:
            if isinstance(event, FunctionToolResultEvent):
                results.append(event.part)
            elif isinstance(event, AgentRunResultEvent):
                output = event.result.output

    offered = seen[0]
    assert set(offered) == {
        "read_file",
        "write_file",
        "list_directory",
        "find_files",
        "grep_search",
    }
    assert offered["read_file"].description.startswith("Read a UTF-8 text file")
    assert offered["read_file"].parameters_json_schema["properties"]["offset"] == {
        "default": 0,
        "description": "Number of lines to skip from the start of the file (0-based).",
        "type": "integer",
    }

    by_call = {part.tool_call_id: part for part in results}
    refused = by_call["call-0"]
    assert refused.outcome == "failed"
    assert refused.content == "The path 'escape.txt' leads outside the allowed root."
    assert by_call["call-1"].outcome == "success"
    assert by_call["call-1"].content["content"].startswith("hello from the workspace")
    assert by_call["call-2"].outcome == "success"
    assert by_call["call-2"].content["matches"] == []

    # The model got all three answers, the refusal among them, then finished.
    assert [p.outcome for p in seen[1]] == ["failed", "success", "success"]
    assert output == "3 results"


async def test_a_written_file_is_read_back_in_the_same_run(layout, settings):
    toolset = toolset_for(
        [{"tool": "write_file"}, {"tool": "read_file"}],
        ToolContext(repo_root=Path(settings.REPO_ROOT), user_role="developer"),
    )

    def model(messages, info: AgentInfo) -> ModelResponse:
        step = len(messages)
        if step == 1:
            call = ToolCallPart("write_file", {"path": "out/a.md", "content": "# hi\n"})
            return ModelResponse(parts=[call])
        if step == 3:
            return ModelResponse(
                parts=[ToolCallPart("read_file", {"path": "out/a.md"})]
            )
        return ModelResponse(parts=[TextPart(messages[-1].parts[0].content["content"])])

    result = await Agent(FunctionModel(model), toolsets=[toolset]).run(
        "write then read"
    )
    assert result.output == "# hi\n"
    assert (layout.root / "out" / "a.md").read_text() == "# hi\n"
