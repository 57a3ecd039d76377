"""What turns cost and who may spend (DESIGN.md section 11), through real
turns: REST and the websocket on the real ASGI app, pydantic-ai's OpenAI model
talking HTTP to the fake server (which counts prompt words as input tokens
and answer words as output tokens)."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import AsyncClient
from django.utils import timezone
from genai_prices import data_snapshot
from pydantic_ai.usage import UsageLimits

from sessions_app import limits, runner, services
from sessions_app.models import AgentExecution, Event
from tests.plugins.runtime import access_token
from usage import allowances, pricing
from usage.budgets import BudgetExceeded, period_bounds
from usage.models import Budget, BudgetReservation, ModelPrice

pytestmark = pytest.mark.django_db(transaction=True)


async def say(user, session, content: str):
    return await AsyncClient().post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": content},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )


async def turn(user, session, content: str) -> dict:
    response = await say(user, session, content)
    assert response.status_code == 200, response.content
    return response.json()["execution"]


async def test_cost_comes_from_a_model_price_glob_before_bundled_prices(
    fake_llm, user, make_agent, make_session
):
    # The glob is more specific than the bundled gpt-4o-mini price it overrides.
    await ModelPrice.objects.acreate(
        model="openai-chat:gpt-4o*",
        input_usd_per_mtok=Decimal("2"),
        output_usd_per_mtok=Decimal("10"),
    )
    agent = await sync_to_async(make_agent)(user, model="openai-chat:gpt-4o-mini")
    session = await sync_to_async(make_session)(user, agent)
    execution = await turn(user, session, "[[tokens=100]] price me")
    usage = execution["usage"]
    assert usage["output_tokens"] == 100 and usage["input_tokens"] > 0
    want = (usage["input_tokens"] * 2 + usage["output_tokens"] * 10) / Decimal(10**6)
    assert Decimal(usage["cost_usd"]) == want and usage["priced"] is True
    assert (
        isinstance(usage["cost_usd"], str) and len(usage["cost_usd"].split(".")[1]) >= 8
    )
    for key in ("cache_read_tokens", "cache_write_tokens", "tool_calls", "requests"):
        assert key in usage
    row = await AgentExecution.objects.aget(pk=execution["id"])
    assert (row.input_tokens, row.output_tokens, row.requests) == (
        usage["input_tokens"],
        usage["output_tokens"],
        1,
    )
    assert row.cost_usd == want and row.priced


async def test_cost_of_a_known_model_comes_from_the_bundled_snapshot(
    fake_llm, user, make_agent, make_session
):
    agent = await sync_to_async(make_agent)(user, model="openai-chat:gpt-4o-mini")
    session = await sync_to_async(make_session)(user, agent)
    usage = (await turn(user, session, "[[tokens=200]] price me"))["usage"]
    # gpt-4o-mini: 0.15 USD per million input tokens, 0.60 per million output.
    want = (
        usage["input_tokens"] * Decimal("0.15")
        + usage["output_tokens"] * Decimal("0.6")
    ) / Decimal(10**6)
    assert Decimal(usage["cost_usd"]) == want and usage["priced"] is True
    # Priced from the data bundled with the package, never a downloaded one.
    assert not data_snapshot.get_snapshot().from_auto_update


async def test_an_unknown_model_has_no_price_not_a_zero_one(
    fake_llm, user, make_agent, make_session
):
    agent = await sync_to_async(make_agent)(user, model="openai-chat:nobody-knows")
    session = await sync_to_async(make_session)(user, agent)
    execution = await turn(user, session, "[[tokens=5]] hi")
    assert execution["usage"]["cost_usd"] is None
    assert execution["usage"]["priced"] is False
    row = await AgentExecution.objects.aget(pk=execution["id"])
    assert row.cost_usd is None and not row.priced and row.output_tokens == 5


async def test_a_token_budget_refuses_at_its_boundary_on_rest_and_websocket(
    fake_llm, user, make_agent, make_session, ws_connect
):
    agent = await sync_to_async(make_agent)(user)
    session = await sync_to_async(make_session)(user, agent)
    first = await turn(user, session, "[[tokens=10]] spend")
    spent = first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    # Room for exactly one more token: the next turn is admitted...
    budget = await Budget.objects.acreate(
        scope="agent", agent=agent, period="month", limit_tokens=spent + 1
    )
    second = await turn(user, session, "[[tokens=3]] more")
    assert second["status"] == "failed"  # its allowance was one token
    assert second["error_code"] == "usage_limit_exceeded"
    # ...and then nothing is left: refused, with nothing stored.
    events_before = await Event.objects.filter(session=session).acount()
    executions_before = await AgentExecution.objects.acount()
    response = await say(user, session, "[[tokens=3]] again")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    details = error["details"]
    assert details["budget"] == str(budget.pk)
    assert details["remaining_tokens"] <= 0 and details["remaining_usd"] is None
    assert details["resets_at"] == period_bounds("month", timezone.now())[1].isoformat()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=3]] by socket"})
    frame = await ws.recv()
    assert frame["type"] == "error" and frame["error"]["code"] == "budget_exceeded"
    assert frame["error"]["details"]["budget"] == str(budget.pk)
    await ws.close()
    assert await Event.objects.filter(session=session).acount() == events_before
    assert await AgentExecution.objects.acount() == executions_before
    assert await BudgetReservation.objects.acount() == 0  # given back at the end


async def test_a_running_turn_is_bounded_by_its_reservation(
    fake_llm, settings, user, make_agent, make_session
):
    settings.AGENTRY_TURN_RESERVATION = 40
    agent = await sync_to_async(make_agent)(user)
    session = await sync_to_async(make_session)(user, agent)
    await Budget.objects.acreate(
        scope="user", user=user, period="day", limit_tokens=10_000
    )
    small = await turn(user, session, "[[tokens=10]] fits")
    assert small["status"] == "succeeded"
    big = await turn(user, session, "[[tokens=100]] does not fit in 40")
    assert big["status"] == "failed" and big["error_code"] == "usage_limit_exceeded"
    # It overshot by its one request, and that is what it spent.
    assert big["usage"]["output_tokens"] == 100


async def test_a_usd_budget_and_a_warn_budget(fake_llm, user, make_agent, make_session):
    await ModelPrice.objects.acreate(
        model="openai-chat:fake",
        input_usd_per_mtok=Decimal("1000000"),  # a dollar a token
        output_usd_per_mtok=Decimal("1000000"),
    )
    agent = await sync_to_async(make_agent)(user)
    session = await sync_to_async(make_session)(user, agent)
    warn = await Budget.objects.acreate(
        scope="user", user=user, period="week", limit_tokens=1, on_exceed="warn"
    )
    first = await turn(user, session, "[[tokens=3]] spend")
    assert first["budget_warning"] is None  # nothing was used up as it started
    second = await turn(user, session, "[[tokens=3]] spend")
    assert [w["budget"] for w in second["budget_warning"]] == [str(warn.pk)]
    assert second["status"] == "succeeded"  # warn budgets never refuse
    cost = Decimal(first["usage"]["cost_usd"]) + Decimal(second["usage"]["cost_usd"])
    await Budget.objects.acreate(
        scope="user", user=user, period="total", limit_usd=cost
    )
    response = await say(user, session, "[[tokens=3]] one dollar too many")
    assert response.status_code == 429
    details = response.json()["error"]["details"]
    assert Decimal(details["remaining_usd"]) == 0 and details["resets_at"] is None


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="row locks are PostgreSQL's; SQLite serialises every writer",
)
async def test_concurrent_starts_cannot_share_one_remainder(
    settings, fake_llm, user, make_agent, make_session
):
    """Twenty turns started at once by one user, under a budget with room for
    one reservation: exactly one is admitted. The admitted turn hangs until
    cancelled, so no start can see its reservation already settled."""
    settings.AGENTRY_MAX_ACTIVE_TURNS = 100
    settings.AGENTRY_TURN_RATE = "1000/min"
    agent = await sync_to_async(make_agent)(user)
    sessions = [await sync_to_async(make_session)(user, agent) for _ in range(20)]
    await Budget.objects.acreate(
        scope="user", user=user, period="total", limit_tokens=100
    )
    results = await asyncio.gather(
        *(
            runner.submit_turn(
                runner.TurnRequest(
                    session_id=s.pk, user_id=user.pk, content="[[hang]] go"
                )
            )
            for s in sessions
        ),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, runner.Submission)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(admitted), len(refused)) == (1, 19), results
    await runner.cancel_turn(admitted[0].execution.session_id)
    await runner.wait_for_execution(admitted[0])
    assert await AgentExecution.objects.acount() == 1


async def test_a_turn_run_by_another_process_keeps_its_reservation_as_its_limit(
    settings, user, make_agent, make_session
):
    """A worker (or a takeover) runs a turn another process opened: its limit
    is the turn's own reservation, not the remainder its reservation holds."""
    settings.AGENTRY_TURN_RESERVATION = 300
    agent = await sync_to_async(make_agent)(user, model="offline")
    session = await sync_to_async(make_session)(user, agent)
    await Budget.objects.acreate(
        scope="user", user=user, period="day", limit_tokens=500
    )
    opened = await sync_to_async(limits.turn_open_budgeted)(
        services.turn_open,
        session=session,
        user_id=user.pk,
        content="hi",
        metadata={},
        client_message_id="",
        policy="reject",
        model="offline",
    )
    execution_id = str(opened.execution.pk)
    allowances.forget(execution_id)  # this process never opened it
    bounded = await limits.bounded_by_budgets(UsageLimits(), execution_id)
    assert bounded.total_tokens_limit == 300
    # A second turn gets only what is left: 500 - 300.
    other = await sync_to_async(make_session)(user, agent)
    second = await sync_to_async(limits.turn_open_budgeted)(
        services.turn_open,
        session=other,
        user_id=user.pk,
        content="hi",
        metadata={},
        client_message_id="",
        policy="reject",
        model="offline",
    )
    reserved = await BudgetReservation.objects.aget(execution=second.execution)
    assert reserved.tokens == 200


def test_a_price_change_applies_to_the_next_cost_in_every_process():
    """Prices are kept per process and read again once the table changes:
    a save or delete here, or a change another process made (which leaves a
    new generation in the shared cache)."""
    model = "openai-chat:house-model"
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    assert pricing.cost_of(model, usage) is None  # unknown: read, and kept
    price = ModelPrice.objects.create(
        model=model, input_usd_per_mtok=Decimal("2"), output_usd_per_mtok=1
    )
    assert pricing.cost_of(model, usage) == Decimal("2")
    price.input_usd_per_mtok = Decimal("3")
    price.save()
    assert pricing.cost_of(model, usage) == Decimal("3")

    # Another process's change: no signal here, only its new generation.
    ModelPrice.objects.filter(pk=price.pk).update(input_usd_per_mtok=Decimal("5"))
    assert pricing.cost_of(model, usage) == Decimal("3")  # still this generation
    cache.set(pricing.GENERATION_KEY, "written-by-another-process", timeout=None)
    assert pricing.cost_of(model, usage) == Decimal("5")

    price.delete()
    assert pricing.cost_of(model, usage) is None
