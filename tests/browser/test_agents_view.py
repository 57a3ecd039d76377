"""The chat page's agents view in a real Chromium against a live daphne: a new
user creates an agent from the form (its tool's config form built from the
registry's JSON schema), chats with it, edits it, installs a listing, adds a
public agent, publishes and deletes, at 1280 and 390 px."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from testing.fake_openai import FAKE_MODEL
from tests.browser.conftest import Site, watched_page

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)

NARROW = {"width": 390, "height": 760}

# How the schema form shows mcp_server's properties: nullable string, list of
# strings, map of headers, bounded number.
SHAPES = {
    "url": "string",
    "headers": "json",
    "tool_prefix": "string",
    "allowed_tools": "lines",
    "timeout_seconds": "number",
}


@pytest.fixture(scope="module")
def publisher(daphne_server: Site) -> Iterator[httpx.Client]:
    """Another user, with a marketplace listing and a public agent."""
    name = f"pub{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    with httpx.Client(base_url=daphne_server.url, timeout=30) as api:
        created = api.post(
            "/api/auth/register",
            json={
                "username": name,
                "email": f"{name}@example.com",
                "password": password,
            },
        )
        assert created.status_code == 201, created.text
        tokens = api.post(
            "/api/auth/login", json={"username": name, "password": password}
        )
        api.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
        writer = api.post(
            "/api/agents/",
            json={
                "name": "Tidy writer",
                "model": FAKE_MODEL,
                "instructions": "Write tidily.",
            },
        )
        assert writer.status_code == 201, writer.text
        listing = api.post(
            "/api/marketplace/",
            json={
                "agent": writer.json()["id"],
                "title": "Tidy writer",
                "description": "Rewrites your notes tidily.",
                "category": "writing",
                "tags": ["notes"],
            },
        )
        assert listing.status_code == 201, listing.text
        reviewer = api.post(
            "/api/agents/",
            json={
                "name": "Shared reviewer",
                "model": FAKE_MODEL,
                "visibility": "public",
                "tools": [{"tool": "read_file", "config": {"max_read_bytes": 4096}}],
            },
        )
        assert reviewer.status_code == 201, reviewer.text
        yield api


def register(page, site: Site) -> str:
    page.goto(f"{site.url}/register/")
    name = f"new{uuid.uuid4().hex[:8]}"
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.com")
    page.get_by_label("Password", exact=True).fill("A-long-enough-pass-42")
    page.get_by_label("Password again").fill("A-long-enough-pass-42")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")
    return name


def my_agents(page) -> list[dict]:
    return page.request.get("/api/agents/").json()["results"]


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def test_a_new_user_creates_chats_edits_installs_publishes_and_deletes_agents(
    browser, daphne_server, publisher
):
    with watched_page(browser, base_url=daphne_server.url) as page:
        register(page, daphne_server)
        sidebar = page.locator("#sidebar")
        expect(sidebar).to_contain_text("You have no agents yet.")
        expect(sidebar.get_by_role("button", name="Create an agent")).to_be_visible()
        offer = page.locator("#main").get_by_role(
            "button", name="Create your first agent"
        )
        offer.click()
        view = page.locator("#agents-view")
        expect(view.get_by_role("heading", name="New agent")).to_be_visible()
        expect(page.locator("#main")).to_be_hidden()

        view.get_by_label("Name").fill("Librarian")
        view.get_by_label("Model").fill("offline")
        view.get_by_label("Instructions").fill("Answer about files.")
        view.get_by_label("Tool kind").select_option("list_directory")
        view.get_by_role("button", name="Add tool").click()

        # The config form is the kind's JSON schema: an enum is a select with
        # its default named, a bounded integer a number field.
        tool = view.locator("fieldset.tool-entry[data-tool='list_directory']")
        scope = tool.get_by_label("Scope")
        expect(scope.locator("option")).to_have_text(
            ["Default (repo)", "repo", "workspace"]
        )
        scope.select_option("repo")
        entries = tool.get_by_label("Max Entries")
        expect(entries).to_have_attribute("type", "number")
        expect(entries).to_have_attribute("placeholder", "500")

        # The server refuses the config: its message sits next to the field
        # and nothing typed is lost.
        entries.fill("0")
        view.get_by_role("button", name="Create agent").click()
        error = tool.locator(".schema-field[data-property='max_entries'] .field-error")
        expect(error).to_contain_text("greater than or equal to 1")
        expect(entries).to_have_attribute("aria-invalid", "true")
        expect(view.locator(".form-errors")).to_contain_text("not saved")
        expect(view.get_by_label("Name")).to_have_value("Librarian")
        expect(view.get_by_label("Instructions")).to_have_value("Answer about files.")
        expect(scope).to_have_value("repo")
        expect(entries).to_have_value("0")
        assert my_agents(page) == []

        entries.fill("50")
        view.get_by_role("button", name="Create agent").click()
        expect(view.locator(".agents-notice")).to_contain_text("Librarian was created")
        [created] = my_agents(page)
        assert created["model"] == "offline"
        assert created["tools"][0]["config"] == {"scope": "repo", "max_entries": 50}
        expect(
            sidebar.get_by_role("button", name="New chat with Librarian")
        ).to_be_visible()
        expect(offer).to_be_hidden()
        expect(page.locator("#empty-first-agent")).to_have_attribute("hidden", "")

        # Chat with it: the offline model lists the sandbox with the tool.
        view.get_by_role("button", name="Chat with Librarian").click()
        expect(page.locator("#main")).to_be_visible()
        expect(page.locator("#connection")).to_have_text("Live")
        box = page.get_by_label("Message")
        box.fill("list the files")
        box.press("Enter")
        expect(page.locator("details.tool .tool-name")).to_have_text("list_directory")
        expect(page.locator(".msg-agent:not(.msg-streaming)")).to_contain_text(
            "notes.txt"
        )

        # Edit: the form comes back filled in; approval switches save.
        page.get_by_role("button", name="Manage agents").click()
        view.get_by_role("button", name="Edit Librarian").click()
        expect(view.get_by_label("Name")).to_have_value("Librarian")
        expect(tool.get_by_label("Max Entries")).to_have_value("50")
        expect(tool.get_by_label("Scope")).to_have_value("repo")
        tool.get_by_label("Ask me before each call").check()
        tool.get_by_label("An unanswered approval is denied after (seconds)").fill(
            "600"
        )
        tool.get_by_label("Whoever approves may edit").check()
        view.get_by_label("Instructions").fill("Answer about files, briefly.")
        view.get_by_role("button", name="Save").click()
        expect(view.locator(".agents-notice")).to_contain_text("Librarian was saved")
        [edited] = my_agents(page)
        assert edited["instructions"] == "Answer about files, briefly."
        assert edited["version"] == 2
        entry = edited["tools"][0]
        assert (
            entry["requires_approval"],
            entry["approval_ttl_seconds"],
            entry["allow_edit"],
        ) == (
            True,
            600,
            True,
        )
        assert entry["config"] == {"scope": "repo", "max_entries": 50}

        # Install a marketplace listing and add a public agent.
        view.get_by_role("button", name="Install Tidy writer").click()
        expect(view.locator(".agents-notice")).to_contain_text(
            "Tidy writer is now one of your agents"
        )
        view.get_by_role("button", name="Add Shared reviewer to my agents").click()
        expect(view.locator(".agents-notice")).to_contain_text(
            "Shared reviewer is now one of your agents"
        )
        mine = {agent["name"]: agent for agent in my_agents(page)}
        assert set(mine) == {"Librarian", "Tidy writer", "Shared reviewer"}
        assert mine["Shared reviewer"]["tools"][0]["config"] == {"max_read_bytes": 4096}
        assert mine["Shared reviewer"]["visibility"] == "private"
        expect(
            sidebar.get_by_role("button", name="New chat with Tidy writer")
        ).to_be_attached()

        # Publish, on a narrow window.
        page.set_viewport_size(NARROW)
        view.get_by_role("button", name="Publish Librarian").click()
        no_horizontal_scroll(page)
        view.get_by_label("Category").fill("files")
        view.get_by_label("Tags").fill("files, demo")
        view.get_by_role("button", name="Publish").click()
        expect(view.locator(".agents-notice")).to_contain_text(
            "Librarian is in the marketplace"
        )
        expect(
            view.get_by_role("button", name="Withdraw listing Librarian")
        ).to_be_visible()
        listings = publisher.get("/api/marketplace/?search=Librarian").json()["results"]
        assert [(x["title"], x["category"], x["tags"]) for x in listings] == [
            ("Librarian", "files", ["files", "demo"])
        ]
        assert listings[0]["config"]["tools"][0]["requires_approval"] is True

        view.get_by_role("button", name="Edit Librarian").click()
        expect(tool.get_by_label("Max Entries")).to_be_visible()
        no_horizontal_scroll(page)
        view.get_by_role("button", name="Cancel").click()

        # Delete asks once more in the page, then the agent is gone everywhere.
        view.get_by_role("button", name="Delete Librarian").click()
        view.get_by_role("button", name="Really delete Librarian?").click()
        expect(view.locator(".agents-notice")).to_contain_text("Librarian was deleted")
        assert "Librarian" not in {agent["name"] for agent in my_agents(page)}
        expect(
            sidebar.get_by_role("button", name="New chat with Librarian")
        ).to_have_count(0)
        no_horizontal_scroll(page)


def test_a_schema_form_reads_reports_and_keeps_what_was_typed(chat_page):
    """Nullable, list and JSON properties; unreadable input stays in the form."""
    result = chat_page.evaluate(
        """async () => {
          const { SchemaForm, toolConfigErrors } = await import('/static/chat/schema_form.js');
          const kinds = await (await fetch('/api/tools/')).json();
          const mcp = kinds.find((kind) => kind.name === 'mcp_server');
          const form = new SchemaForm(mcp.config_schema, {url: 'https://mcp.example/mcp'});
          document.body.append(form.element);
          const field = (name) => form.element.querySelector(`[name="${name}"]`);
          const kinds_of = [...form.element.querySelectorAll('.schema-field')]
            .map((node) => [node.dataset.property, node.className.split('schema-field-')[1]]);
          field('allowed_tools').value = 'echo\\n  add \\n';
          field('headers').value = '{"Authorization": ';
          const bad = form.read();
          form.showErrors(bad.problems);
          const shown = field('headers').closest('.field').querySelector('.field-error').textContent;
          field('headers').value = '{"X-Key": {"secret": "key"}}';
          const good = form.read();
          const mapped = toolConfigErrors([
            "Invalid config for tool 'mcp_server': url: Value error, must be an http:// or https:// URL",
            "Unknown tool 'nope'.",
          ]);
          form.showErrors(mapped);
          return {
            kinds_of, bad, shown, good, mapped,
            urlError: field('url').closest('.field').querySelector('.field-error').textContent,
            top: form.element.querySelector('.schema-form-error').textContent,
            url: field('url').value,
          };
        }"""
    )
    kinds = dict(result["kinds_of"])
    assert {name: kinds[name] for name in SHAPES} == SHAPES
    assert result["bad"]["problems"] == {"headers": "This is not valid JSON."}
    assert result["shown"] == "This is not valid JSON."
    assert result["good"] == {
        "problems": {},
        "value": {
            "url": "https://mcp.example/mcp",
            "allowed_tools": ["echo", "add"],
            "headers": {"X-Key": {"secret": "key"}},
        },
    }
    assert result["mapped"]["url"].startswith("Value error")
    assert result["urlError"].startswith("Value error")
    assert result["top"] == "Unknown tool 'nope'."
    assert result["url"] == "https://mcp.example/mcp"
