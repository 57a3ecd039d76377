"""Delegated work on the chat page: a child's events nest in a collapsible
block under the tool call that delegated them, live and after a reload; a
workflow shows one block per step, named after the step."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from testing.fake_openai import FAKE_MODEL

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)


# Records the longest text a streaming bubble inside a delegated block showed:
# proof that the child's text streamed into its block before it was stored.
WATCH_CHILD_STREAMING = """() => {
  window.__childStreamed = 0;
  new MutationObserver(() => {
    for (const node of document.querySelectorAll('.delegation .msg-streaming .msg-body')) {
      window.__childStreamed = Math.max(window.__childStreamed, node.textContent.length);
    }
  }).observe(document.querySelector('#log'), {subtree: true, childList: true, characterData: true});
}"""


def send(page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def open_chat(page, name: str) -> None:
    page.reload()
    page.get_by_role("button", name=f"New chat with {name}").click()
    expect(page.locator("#connection")).to_have_text("Live")


def outline(page) -> list:
    """The log's tree of elements (class and own text), nested blocks included."""
    return page.eval_on_selector(
        "#log",
        """log => {
          const walk = (node) => [...node.children].map((c) => [
            c.className,
            c.matches('.delegation, .delegation-body') ? walk(c)
              : c.textContent.replace(/\\s+/g, ' ').trim(),
          ]);
          return walk(log);
        }""",
    )


def create(account, **body) -> dict:
    made = account.api.post("/api/agents/", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def test_a_child_nests_under_its_call_and_a_workflow_shows_its_steps(
    chat_page, account
):
    page = chat_page
    helper = create(account, name="Helper", model=FAKE_MODEL, instructions="Help.")
    create(
        account,
        name="Boss",
        model=FAKE_MODEL,
        instructions="Delegate.",
        tools=[
            {
                "tool": "delegate",
                "config": {"agent": helper["id"], "name": "ask_helper"},
            }
        ],
    )
    open_chat(page, "Boss")
    task = "[[delay=40]] [[reply the child answer, streamed]]"
    args = json.dumps({"task": task}).replace("[", "\\u005b").replace("]", "\\u005d")
    page.evaluate(WATCH_CHILD_STREAMING)
    send(page, f"[[call ask_helper {args}]] ask the helper")

    block = page.locator("details.tool + details.delegation")
    expect(block.locator(".delegation-agent")).to_have_text("Helper")
    expect(block.locator(".msg-agent")).to_contain_text("the child answer, streamed")
    assert page.evaluate("window.__childStreamed") > 0, (
        "the child's text did not stream"
    )
    expect(page.locator("#log > .msg-agent").last).to_contain_text("The tool said")
    expect(page.locator("#log > .turn-meta")).to_contain_text("succeeded")
    block.locator("summary").click()
    expect(block.locator(".delegation-body")).to_be_hidden()  # it folds away
    block.locator("summary").click()
    before = outline(page)
    page.reload()
    expect(page.locator("#log > .turn-meta")).to_contain_text("succeeded")
    assert outline(page) == before

    first = create(account, name="Drafter", model=FAKE_MODEL)
    second = create(account, name="Polisher", model=FAKE_MODEL)
    create(
        account,
        name="Pipeline",
        kind="workflow",
        workflow={
            "steps": [
                {"name": "draft", "agent": first["id"], "prompt": "{input}"},
                {
                    "name": "polish",
                    "agent": second["id"],
                    "prompt": "[[reply polished {previous}]]",
                },
            ]
        },
    )
    open_chat(page, "Pipeline")
    send(page, "[[reply rough]]")
    steps = page.locator("#log > details.delegation")
    expect(steps.locator(".delegation-step")).to_have_text(["draft", "polish"])
    expect(steps.nth(1).locator(".msg-agent")).to_contain_text("polished rough")
    expect(page.locator("#log > .msg-agent .msg-body").last).to_have_text(
        "polished rough"
    )


def test_a_childs_approval_shows_in_its_block_and_the_decision_resumes_the_turn(
    chat_page, daphne_server, account
):
    page = chat_page
    me = account.api.get("/api/auth/me").json()
    written = daphne_server.workspaces / str(me["id"]) / "child.txt"
    helper = create(
        account,
        name="Careful helper",
        model=FAKE_MODEL,
        # A plain user writes in their own workspace, not the shared repo.
        tools=[
            {
                "tool": "write_file",
                "config": {"scope": "workspace"},
                "requires_approval": True,
            }
        ],
    )
    create(
        account,
        name="Manager",
        model=FAKE_MODEL,
        instructions="Delegate.",
        tools=[
            {
                "tool": "delegate",
                "config": {"agent": helper["id"], "name": "ask_helper"},
            }
        ],
    )
    open_chat(page, "Manager")
    task = '[[call write_file {"path": "child.txt", "content": "yes"}]] save'
    args = json.dumps({"task": task}).replace("[", "\\u005b").replace("]", "\\u005d")
    send(page, f"[[call ask_helper {args}]] ask the helper")

    block = page.locator("details.tool + details.delegation")
    card = block.get_by_role("region", name="Approval needed")
    expect(card).to_contain_text("write_file")
    expect(card).to_contain_text('"path": "child.txt"')
    assert not written.exists()
    card.get_by_role("button", name="Approve").click()

    expect(block.locator(".msg-agent")).to_contain_text("The tool said")
    expect(page.locator("#log > .turn-meta")).to_contain_text("succeeded")
    expect(page.locator("#log > .msg-agent").last).to_contain_text("The tool said")
    assert written.read_text() == "yes"
    expect(card).to_contain_text("Approved 1")
    expect(card.get_by_role("button", name="Approve")).to_be_hidden()

    page.reload()
    card = page.locator("details.delegation").get_by_role(
        "region", name="Approval needed"
    )
    expect(card).to_contain_text("Approved 1")
    expect(card.get_by_role("button", name="Approve")).to_be_hidden()
