"""The chat page in a real Chromium against a live daphne and the fake model.

Set AGENTRY_CHAT_SCREENSHOT=<path.png> to save the screenshot of the chat
mid-answer that the README shows (docs/chat.png).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from playwright.sync_api import expect

from testing.fake_openai import FAKE_MODEL
from tests.browser.conftest import watched_page

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)

AGENT = "Sandbox helper"
NARROW = {"width": 390, "height": 760}

# Records, from the moment it is installed, the longest text a streaming
# bubble ever showed: proof that text arrived before the final message.
WATCH_STREAMING = """() => {
  window.__streamed = 0;
  new MutationObserver(() => {
    for (const node of document.querySelectorAll('.msg-streaming .msg-body')) {
      window.__streamed = Math.max(window.__streamed, node.textContent.length);
    }
  }).observe(document.querySelector('#log'), {subtree: true, childList: true, characterData: true});
}"""

# Lets a test cut the page's websockets and keep them down until released.
SOCKET_SWITCH = """((nowhere) => {
  const Real = window.WebSocket;
  window.__sockets = [];
  window.__socketsDown = false;
  window.WebSocket = function (url, protocols) {
    const target = window.__socketsDown ? nowhere : url;
    const ws = new Real(target, protocols);
    window.__sockets.push(ws);
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})(%s);"""


def sign_in(page, daphne_server, account) -> None:
    page.goto(f"{daphne_server.url}/")
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=AGENT)).to_be_visible()


def new_chat(page) -> str:
    page.get_by_role("button", name=f"New chat with {AGENT}").click()
    expect(page.get_by_label("Message")).to_be_enabled()
    expect(page.locator("#connection")).to_have_text("Live")
    return re.search(r"session=([0-9a-f-]+)", page.url).group(1)


def send(page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def log_outline(page) -> list[tuple[str, str]]:
    """What the conversation shows, element by element (class and text)."""
    return page.eval_on_selector_all(
        "#log > *",
        "nodes => nodes.map(n => [n.className, n.textContent.replace(/\\s+/g, ' ').trim()])",
    )


def answers(page):
    return page.locator(".msg-agent:not(.msg-streaming)")


def test_streams_the_answer_shows_tools_and_usage_and_survives_a_reload(
    page, daphne_server, account
):
    sign_in(page, daphne_server, account)
    new_chat(page)
    page.evaluate(WATCH_STREAMING)

    send(page, '[[call list_directory {"path": "."}]] [[delay=30]] look around')
    expect(page.locator(".msg-user")).to_contain_text("look around")
    tool = page.locator("details.tool")
    expect(tool.locator(".tool-name")).to_have_text("list_directory")
    expect(answers(page).first).to_contain_text("The tool said")
    assert page.evaluate("window.__streamed") > 0, "no text streamed before the answer"

    tool.locator("summary").click()
    expect(tool).to_contain_text("Arguments")
    expect(tool.locator(".tool-section").first).to_contain_text('"path": "."')
    expect(tool).to_contain_text("Result")
    expect(tool).to_contain_text("notes.txt")
    expect(tool).to_have_attribute("data-state", "done")
    tool.locator("summary").click()  # and it folds away again
    expect(tool.locator(".tool-section").first).to_be_hidden()
    usage = page.locator(".turn-meta").first
    expect(usage).to_contain_text("succeeded")
    expect(usage).to_contain_text(re.compile(r"\d+ tokens \(\d+ in, \d+ out\)"))
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    # Markdown and code, streamed slowly enough to be caught mid-answer.
    reply = (
        "Here is the plan:\n\n- read **notes.txt**\n- summarise it\n\n"
        "```python\nfor line in open('notes.txt'):\n    print(line.strip())\n```\n\nDone."
    )
    screenshot = os.environ.get("AGENTRY_CHAT_SCREENSHOT")
    send(page, f"[[delay={250 if screenshot else 60}]] [[reply {reply}]]")
    expect(page.locator(".msg-streaming")).to_contain_text("plan")
    if screenshot:
        page.set_viewport_size({"width": 1280, "height": 1060})
        expect(page.locator(".msg-streaming pre")).to_contain_text("open(")
        page.screenshot(path=screenshot)
    expect(answers(page)).to_have_count(2)
    final = answers(page).nth(1)
    expect(final.locator("li strong")).to_have_text("notes.txt")
    code = final.locator("pre code")
    expect(code).to_contain_text("print(line.strip())")
    style = code.evaluate(
        "c => [getComputedStyle(c).fontFamily, getComputedStyle(c.parentElement).overflowX]"
    )
    assert "mono" in style[0].lower() and style[1] == "auto", style
    expect(page.locator(".turn-meta")).to_have_count(2)

    before = log_outline(page)
    page.reload()
    expect(page.locator(".turn-meta")).to_have_count(2)
    assert log_outline(page) == before


def test_stop_ends_a_long_answer(chat_page):
    page = chat_page
    new_chat(page)

    send(page, "[[tokens=400 delay=40]] tell me everything")
    expect(page.locator(".msg-streaming")).to_contain_text("word3")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    started = time.monotonic()
    page.get_by_label("Message").press("Escape")

    expect(page.locator(".msg-error")).to_contain_text("Stopped.")
    expect(page.locator(".turn-meta")).to_contain_text("cancelled")
    expect(stop).to_be_hidden()
    assert time.monotonic() - started < 10
    assert "word399" not in page.locator("#log").inner_text()


def test_a_reload_mid_answer_picks_up_the_running_turn(chat_page):
    page = chat_page
    new_chat(page)

    send(page, "[[tokens=60 delay=40]] count slowly")
    expect(page.locator(".msg-streaming")).to_contain_text("word5")
    page.reload()

    expect(page.locator(".msg-user")).to_contain_text("count slowly")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    # Text streamed after the reload appears as it arrives...
    expect(page.locator(".msg-streaming")).to_contain_text(re.compile(r"word[1-5]\d"))
    # ...and the stored answer replaces it, whole.
    expect(answers(page)).to_contain_text("word0 word1")
    expect(answers(page)).to_contain_text("word59")
    expect(page.locator(".turn-meta")).to_contain_text("succeeded")


def test_a_lost_connection_loses_nothing(chat_page, daphne_server, account):
    page = chat_page
    # A path with no websocket route: the handshake fails at once, as offline.
    nowhere = f"{daphne_server.url.replace('http', 'ws', 1)}/ws/nowhere/"
    page.add_init_script(SOCKET_SWITCH % json.dumps(nowhere))
    page.reload()
    expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")
    session_id = new_chat(page)

    send(page, "[[tokens=30 delay=40]] while you were away")
    expect(page.locator(".msg-streaming")).to_contain_text("word2")
    page.evaluate(
        "window.__socketsDown = true; window.__sockets.forEach(s => s.close())"
    )
    expect(page.locator("#connection")).to_contain_text("retrying")

    # The turn ends and is stored while the page cannot hear about it.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        runs = account.api.get(f"/api/executions/?session={session_id}").json()
        if runs["results"] and runs["results"][0]["status"] == "succeeded":
            break
        time.sleep(0.2)
    else:
        pytest.fail("the turn did not finish on the server")

    # Back online: the page retries at once instead of waiting out its backoff.
    page.evaluate(
        "window.__socketsDown = false; window.dispatchEvent(new Event('online'))"
    )
    expect(page.locator("#connection")).to_have_text("Live")
    expect(answers(page)).to_contain_text("word29")
    expect(page.locator(".turn-meta")).to_contain_text("succeeded")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    events = account.api.get(f"/api/sessions/{session_id}/events/").json()["results"]
    shown = page.locator(".msg-user, .msg-agent:not(.msg-unfinished)")
    # Waits for the resumed history to settle instead of reading it once.
    expect(shown).to_have_count(len([e for e in events if e["kind"] == "message"]))


def test_html_and_script_in_a_model_answer_never_run(chat_page):
    page = chat_page
    new_chat(page)
    payload = (
        "**still bold** and [click](javascript:window.__pwned='link')\n\n"
        "<script>window.__pwned='script'</script>\n\n"
        "<img src=x onerror=\"window.__pwned='img'\">\n\n"
        "<svg onload=\"window.__pwned='svg'\"></svg>"
    )
    send(page, f"[[reply {payload}]]")

    answer = answers(page).first
    expect(answer.locator("strong")).to_have_text("still bold")
    expect(answer).to_contain_text("<script>window.__pwned='script'</script>")
    log = page.locator("#log")
    assert log.locator("script, img, svg, iframe, [onerror], [onload]").count() == 0
    assert log.locator("a[href^='javascript']").count() == 0
    answer.get_by_text("click").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None

    rendered = page.evaluate(
        """async (cases) => {
          const { renderMarkdown } = await import('/static/chat/markdown.js');
          return cases.map((text) => {
            const box = document.createElement('div');
            box.append(renderMarkdown(text));
            const nodes = [...box.querySelectorAll('*')];
            return {
              tags: [...new Set(nodes.map((n) => n.tagName.toLowerCase()))],
              attributes: [...new Set(nodes.flatMap((n) => [...n.attributes].map((a) => a.name)))],
              hrefs: nodes.filter((n) => n.hasAttribute('href')).map((n) => n.getAttribute('href')),
              text: box.textContent,
            };
          });
        }""",
        [
            '<iframe src="javascript:alert(1)"></iframe>',
            "[x](JaVaScRiPt:alert(1)) [y](data:text/html,<script>alert(1)</script>)",
            '<a href="https://example.com" onclick="alert(1)">a</a>',
            "![pixel](https://tracker.example/p.png)",
            "<style>body{display:none}</style>\n\n<form action=x><input></form>",
        ],
    )
    for case in rendered:
        assert set(case["tags"]) <= {"p", "a", "strong", "em", "code", "br"}, case
        assert set(case["attributes"]) <= {"href", "target", "rel"}, case
        assert all(href.startswith("https://") for href in case["hrefs"]), case
    assert "<iframe" in rendered[0]["text"] and "<style>" in rendered[4]["text"]
    assert rendered[3]["hrefs"] == ["https://tracker.example/p.png"]
    assert page.evaluate("window.__pwned") is None


def test_a_failing_model_is_reported_in_plain_words(chat_page):
    page = chat_page
    new_chat(page)
    send(page, "[[error=400]] this will fail")
    expect(page.locator(".msg-error")).to_contain_text("The model could not answer.")
    expect(page.locator(".turn-meta")).to_contain_text("failed")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()


def test_events_apply_once_and_in_sequence_whatever_order_they_arrive_in(chat_page):
    """What a reload, a resume replay and live frames overlapping look like."""
    result = chat_page.evaluate(
        """async () => {
          const { Conversation } = await import('/static/chat/conversation.js');
          const gaps = [];
          const root = document.createElement('div');
          const chat = new Conversation(root, {
            onRunningChange() {}, announce() {}, onGap: (after) => gaps.push(after),
          });
          const message = (seq, author, content) => ({
            sequence_number: seq, author, kind: 'message', content, partial: false,
            execution: 'x1', metadata: {}, turn_complete: author === 'agent',
          });
          chat.receive(message(1, 'user', 'question'));
          chat.receive({ partial: true, execution: 'x1', content: 'draft ' });
          chat.receive(message(3, 'agent', 'answer'));   // early: waits for 2
          const waited = root.querySelectorAll('.msg-agent:not(.msg-streaming)').length;
          chat.receive(message(2, 'agent', 'thinking'));
          chat.receive(message(2, 'agent', 'thinking'));  // replayed twice
          chat.receive(message(1, 'user', 'question'));
          chat.receive(message(5, 'agent', 'lost'));      // 4 never comes
          await new Promise((done) => setTimeout(done, 1800));
          return {
            waited,
            texts: [...root.children].map((n) => n.textContent.trim()),
            last: chat.lastSequence,
            gaps,
          };
        }"""
    )
    assert result["waited"] == 0
    assert result["texts"] == ["Youquestion", "Agentthinking", "Agentanswer"]
    assert result["last"] == 3
    assert result["gaps"] == [3]


def test_register_and_attach_a_file_on_a_narrow_window(
    browser, daphne_server, account, signed_in
):
    with watched_page(browser, viewport=NARROW) as page:
        page.goto(f"{daphne_server.url}/")
        page.get_by_role("link", name="Create an account").click()
        name = f"narrow{int(time.time() * 1000) % 10**8}"
        page.get_by_label("Username").fill(name)
        page.get_by_label("Email").fill(f"{name}@example.com")
        page.get_by_label("Password", exact=True).fill("A-long-enough-pass-42")
        page.get_by_label("Password again").fill("A-long-enough-pass-42")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Pick a chat")).to_be_visible()
        expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")

        # On a narrow window the sidebar waits behind its toggle.
        toggle = page.get_by_role("button", name="Chats")
        expect(page.get_by_text("You have no agents yet.")).not_to_be_in_viewport()
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.get_by_text("You have no agents yet.")).to_be_in_viewport()
        page.keyboard.press("Escape")
        expect(toggle).to_have_attribute("aria-expanded", "false")

    # Attachments, as the account that has an agent.
    with watched_page(browser, viewport=NARROW, storage_state=signed_in) as page:
        page.goto(f"{daphne_server.url}/")
        expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")
        page.get_by_role("button", name="Chats").click()
        session_id = new_chat(page)
        expect(page.get_by_role("button", name="Attach a file")).to_be_enabled()
        page.locator("#file-input").set_input_files(
            {"name": "brief.txt", "mimeType": "text/plain", "buffer": b"the brief"}
        )
        expect(page.locator(".attachment")).to_have_attribute("data-status", "ready")
        send(page, "[[tokens=3]] see the file")
        expect(page.locator(".msg-user .msg-attachments")).to_contain_text("brief.txt")
        expect(page.locator(".turn-meta")).to_contain_text("succeeded")
        events = account.api.get(f"/api/sessions/{session_id}/events/").json()
        attached = events["results"][0]["metadata"]["attachments"]
        assert "brief.txt" in json.dumps(attached)


def test_structured_output_shows_as_formatted_json(chat_page, account):
    page = chat_page
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
        "required": ["title", "done"],
    }
    extractor = account.api.post(
        "/api/agents/",
        json={"name": "Task extractor", "model": FAKE_MODEL, "output_schema": schema},
    )
    assert extractor.status_code == 201, extractor.text
    page.reload()
    page.get_by_role("button", name="New chat with Task extractor").click()
    expect(page.locator("#connection")).to_have_text("Live")

    send(page, '[[call final_result {"title": "Ship it", "done": false}]] extract')
    output = page.locator(".turn-meta .structured-output pre")
    expect(output).to_have_text('{\n  "title": "Ship it",\n  "done": false\n}')
    expect(page.locator(".turn-meta")).to_contain_text("succeeded")


def test_a_tool_call_waits_for_approval_in_the_page(chat_page, daphne_server, account):
    writer = account.api.post(
        "/api/agents/",
        json={
            "name": "Careful writer",
            "model": FAKE_MODEL,
            # A plain user writes in their own workspace, not the shared repo.
            "tools": [
                {
                    "tool": "write_file",
                    "config": {"scope": "workspace"},
                    "requires_approval": True,
                }
            ],
        },
    )
    assert writer.status_code == 201, writer.text
    me = account.api.get("/api/auth/me").json()
    written = daphne_server.workspaces / str(me["id"]) / "approved.txt"
    page = chat_page
    page.reload()
    page.get_by_role("button", name="New chat with Careful writer").click()
    expect(page.locator("#connection")).to_have_text("Live")

    send(page, '[[call write_file {"path": "approved.txt", "content": "yes"}]] save')
    card = page.get_by_role("region", name="Approval needed")
    expect(card).to_contain_text("write_file")
    expect(card).to_contain_text('"path": "approved.txt"')
    assert not written.exists()
    card.get_by_role("button", name="Approve").click()

    expect(page.locator("details.tool")).to_have_attribute("data-state", "done")
    expect(answers(page).last).to_contain_text("The tool said")
    expect(page.locator(".turn-meta")).to_contain_text("succeeded")
    assert written.read_text() == "yes"
    expect(card).to_contain_text("Approved 1")
    expect(card.get_by_role("button", name="Approve")).to_be_hidden()

    page.reload()
    card = page.get_by_role("region", name="Approval needed")
    expect(card).to_contain_text("Approved 1")
    expect(card.get_by_role("button", name="Approve")).to_be_hidden()
