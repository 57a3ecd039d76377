"""The chat page shows what turns cost (DESIGN.md section 11): each turn's
cost beside its tokens, and the user's spend this month against their budget."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

AGENT = "Sandbox helper"


def test_each_turn_shows_its_cost_and_the_header_the_months_spend(chat_page, account):
    budget = account.api.post(
        "/api/budgets/",
        json={"scope": "user", "period": "month", "limit_tokens": 10**9},
    )
    assert budget.status_code == 201, budget.text
    try:
        page = chat_page
        page.reload()  # the meter reads the budget as the page loads
        page.get_by_role("button", name=f"New chat with {AGENT}").click()
        expect(page.locator("#connection")).to_have_text("Live")
        box = page.get_by_label("Message")
        box.fill("[[tokens=5]] what does it cost")
        box.press("Enter")
        meta = page.locator(".turn-meta").last
        expect(meta).to_contain_text("succeeded")
        # The fake model has no known price: its cost is unknown, never $0.
        expect(meta).to_contain_text("cost unknown")
        expect(page.locator("#spend-meter")).to_contain_text(
            re.compile(
                r"This month: \$0 · [1-9]\d* tokens · budget \(month\): [1-9]\d* of 1000000000 tokens"
            )
        )
    finally:
        account.api.delete(f"/api/budgets/{budget.json()['id']}/")
