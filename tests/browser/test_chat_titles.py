"""A chat's name in the page: given by its first message, changed by its user;
and inline code that stays one piece on a narrow screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)

AGENT = "Sandbox helper"
TOKEN = "agentry-chat-title-token-long-enough-to-wrap"


def test_a_chat_is_named_by_its_first_message_and_renamed_in_the_page(chat_page):
    page = chat_page
    page.get_by_role("button", name=f"New chat with {AGENT}").click()
    box = page.get_by_label("Message")
    expect(box).to_be_enabled()
    expect(page.locator("#connection")).to_have_text("Live")
    box.fill(f"Plan a trip to Lisbon [[reply Run `{TOKEN}` first.]]")
    box.press("Enter")
    answer = page.locator(".msg-agent:not(.msg-streaming)").last
    expect(answer).to_contain_text("first.")

    # The chip is one box on one line, however narrow the window.
    page.set_viewport_size({"width": 390, "height": 760})
    chip = answer.locator("code")
    expect(chip).to_have_text(TOKEN)
    assert chip.evaluate("c => c.getClientRects().length") == 1
    assert chip.evaluate(
        "c => c.getBoundingClientRect().width <= c.parentElement.getBoundingClientRect().width + 1"
    )

    page.set_viewport_size({"width": 1280, "height": 800})
    title = page.locator("#chat-title")
    expect(title).to_have_text("Plan a trip to Lisbon [[reply Run…")
    expect(page.locator(".session-link[aria-current=page]")).to_have_text(
        "Plan a trip to Lisbon [[reply Run…"
    )

    # Escape leaves the name as it was.
    page.get_by_role("button", name="Rename").click()
    name = page.get_by_label("Chat name")
    expect(name).to_be_focused()
    name.fill("Something else")
    name.press("Escape")
    expect(title).to_have_text("Plan a trip to Lisbon [[reply Run…")

    page.get_by_role("button", name="Rename").click()
    name.fill("  Lisbon in May ")
    name.press("Enter")
    expect(title).to_have_text("Lisbon in May")
    expect(page.locator(".session-link[aria-current=page]")).to_have_text(
        "Lisbon in May"
    )
    page.reload()
    expect(page.locator("#chat-title")).to_have_text("Lisbon in May")
