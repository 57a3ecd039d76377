"""Prices, budgets and the usage report over REST (DESIGN.md section 11):
who may read and write what, the report's grouping and totals, and a clear
400 for every bad parameter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app import services
from sessions_app.models import AgentExecution
from tests.factories import AgentFactory, ExecutionFactory, SessionFactory
from usage.models import Budget, ModelPrice
from usage.reports import parse
from usage.reports import report as usage_report

pytestmark = pytest.mark.django_db


def executed(
    session, *, at: dt.datetime, model: str = "test", **figures
) -> AgentExecution:
    execution = ExecutionFactory(session=session, model=model, **figures)
    AgentExecution.objects.filter(pk=execution.pk).update(created_at=at)
    return execution


def test_prices_are_read_by_everyone_and_written_by_staff(
    auth_client, user, admin_user
):
    body = {
        "model": "openai:gpt-4o*",
        "input_usd_per_mtok": "2.5",
        "output_usd_per_mtok": "10",
    }
    assert (
        auth_client(user).post("/api/prices/", body, format="json").status_code == 403
    )
    staff = auth_client(admin_user)
    created = staff.post("/api/prices/", body, format="json")
    assert created.status_code == 201, created.content
    price = created.json()
    assert price["cache_read_usd_per_mtok"] is None
    listed = auth_client(user).get("/api/prices/").json()["results"]
    assert [p["model"] for p in listed] == ["openai:gpt-4o*"]
    path = f"/api/prices/{price['id']}/"
    assert (
        auth_client(user)
        .patch(path, {"input_usd_per_mtok": "0"}, format="json")
        .status_code
        == 403
    )
    assert auth_client(user).delete(path).status_code == 403
    assert (
        staff.patch(path, {"input_usd_per_mtok": "3"}, format="json").json()[
            "input_usd_per_mtok"
        ]
        == "3.000000"
    )
    for bad in (
        {**body, "model": "  "},
        {**body, "input_usd_per_mtok": "-1"},
        {**body, "output_usd_per_mtok": "lots"},
        {"model": "openai:x"},
    ):
        assert staff.post("/api/prices/", bad, format="json").status_code == 400, bad
    assert staff.post("/api/prices/", body, format="json").status_code == 400  # unique
    assert staff.delete(path).status_code == 204


def test_budgets_on_oneself_and_own_agents_staff_on_anyone_and_global(
    auth_client, user, other_user, admin_user
):
    mine, theirs = AgentFactory(owner=user), AgentFactory(owner=other_user)
    client = auth_client(user)

    def post(body: dict, as_client=client):
        return as_client.post("/api/budgets/", body, format="json")

    own = post({"scope": "user", "period": "day", "limit_usd": "5"})
    assert own.status_code == 201, own.content
    assert own.json()["user"] == str(user.pk) and own.json()["on_exceed"] == "block"
    on_agent = post(
        {
            "scope": "agent",
            "agent": str(mine.pk),
            "period": "week",
            "limit_tokens": 1000,
            "on_exceed": "warn",
        }
    )
    assert on_agent.status_code == 201
    shown = on_agent.json()
    assert (shown["spent_tokens"], shown["reserved_tokens"], shown["spent_usd"]) == (
        0,
        0,
        "0.000000000000",
    )
    assert shown["resets_at"].endswith("+00:00")
    assert (
        post(
            {
                "scope": "user",
                "user": str(other_user.pk),
                "period": "day",
                "limit_usd": "1",
            }
        ).status_code
        == 403
    )
    assert (
        post({"scope": "global", "period": "day", "limit_usd": "1"}).status_code == 403
    )
    assert (
        post(
            {
                "scope": "agent",
                "agent": str(theirs.pk),
                "period": "day",
                "limit_usd": "1",
            }
        ).status_code
        == 400
    )
    for bad in (
        {"scope": "user", "period": "day"},  # no limit
        {"scope": "team", "period": "day", "limit_usd": "1"},
        {"scope": "user", "period": "year", "limit_usd": "1"},
        {"scope": "user", "period": "day", "limit_tokens": -1},
        {"scope": "user", "period": "day", "limit_tokens": "many"},
        {"scope": "user", "period": "day", "limit_usd": "1", "on_exceed": "shout"},
        {"scope": "agent", "period": "day", "limit_usd": "1"},
        {"scope": "agent", "agent": "not-a-uuid", "period": "day", "limit_usd": "1"},
        {"period": "day", "limit_usd": "1"},
    ):
        assert post(bad).status_code == 400, bad

    staff = auth_client(admin_user)
    assert (
        post(
            {"scope": "global", "period": "month", "limit_usd": "100"}, staff
        ).status_code
        == 201
    )
    theirs_budget = post(
        {
            "scope": "agent",
            "agent": str(theirs.pk),
            "period": "total",
            "limit_tokens": 5,
        },
        staff,
    )
    assert theirs_budget.status_code == 201
    ids = {b["id"] for b in client.get("/api/budgets/").json()["results"]}
    assert ids == {own.json()["id"], shown["id"]}
    assert len(staff.get("/api/budgets/").json()["results"]) == 4
    hidden = f"/api/budgets/{theirs_budget.json()['id']}/"
    assert client.get(hidden).status_code == 404
    assert (
        client.patch(hidden, {"limit_tokens": 10**9}, format="json").status_code == 404
    )
    assert client.delete(hidden).status_code == 404
    path = f"/api/budgets/{own.json()['id']}/"
    assert client.patch(path, {"scope": "global"}, format="json").status_code == 403
    assert client.patch(path, {"limit_usd": None}, format="json").status_code == 400
    assert (
        client.patch(path, {"limit_tokens": 7}, format="json").json()["limit_tokens"]
        == 7
    )
    assert client.delete(path).status_code == 204
    assert not Budget.objects.filter(pk=own.json()["id"]).exists()


def test_the_usage_report_groups_own_turns(auth_client, user, other_user, admin_user):
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    first_day = today.replace(day=1)
    session = SessionFactory(user=user)
    other_agent_session = SessionFactory(user=user)
    executed(
        session,
        at=first_day,
        model="m1",
        requests=1,
        input_tokens=10,
        output_tokens=1,
        cost_usd=Decimal("0.5"),
        priced=True,
    )
    executed(
        session,
        at=first_day,
        model="m2",
        requests=2,
        input_tokens=20,
        output_tokens=2,
        cost_usd=None,
        priced=False,
    )
    executed(
        other_agent_session,
        at=first_day + dt.timedelta(days=1),
        model="m1",
        requests=3,
        input_tokens=30,
        output_tokens=3,
        cost_usd=Decimal("0.25"),
        priced=True,
    )
    executed(
        other_agent_session,
        at=first_day - dt.timedelta(days=40),
        model="m1",
        requests=9,
        input_tokens=90,
        output_tokens=9,
    )  # an earlier month
    executed(
        SessionFactory(user=other_user),
        at=first_day,
        model="m1",
        requests=100,
        input_tokens=1000,
        output_tokens=100,
    )
    client = auth_client(user)

    by_agent = client.get("/api/usage/", {"group_by": "agent"}).json()
    assert {r["key"]: r["executions"] for r in by_agent["results"]} == {
        str(session.agent_id): 2,
        str(other_agent_session.agent_id): 1,
    }
    assert by_agent["total"] == {
        "executions": 3,
        "requests": 6,
        "input_tokens": 60,
        "output_tokens": 6,
        "cost_usd": "0.750000000000",
    }
    by_model = client.get("/api/usage/", {"group_by": "model"}).json()["results"]
    assert [(r["key"], r["input_tokens"], r["cost_usd"]) for r in by_model] == [
        ("m1", 40, "0.750000000000"),
        ("m2", 20, None),  # no known price: no cost, not 0
    ]
    by_day = client.get("/api/usage/").json()["results"]  # by day, this month
    assert [r["key"] for r in by_day][:2] == [
        first_day.date().isoformat(),
        (first_day + dt.timedelta(days=1)).date().isoformat(),
    ] or today.day == 1
    whole = client.get(
        "/api/usage/",
        {"group_by": "user", "from": "2000-01-01", "to": today.date().isoformat()},
    ).json()
    assert whole["results"] == [{"key": str(user.pk), **whole["total"]}]
    assert whole["total"]["executions"] == 4
    widest = {"group_by": "day", "from": "0001-01-01", "to": "9999-12-31"}
    assert client.get("/api/usage/", widest).json()["total"] == whole["total"]

    assert client.get("/api/usage/", {"user": str(other_user.pk)}).status_code == 403
    staff = auth_client(admin_user)
    theirs = staff.get(
        "/api/usage/", {"group_by": "user", "user": str(other_user.pk)}
    ).json()
    assert theirs["total"]["input_tokens"] == 1000
    everyone = staff.get("/api/usage/", {"group_by": "user"}).json()
    assert everyone["total"]["executions"] == 4
    for bad in (
        {"group_by": "week"},
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"user": "nobody"},
        {"user": ""},
        {"to": ""},
        {"from": ""},
        {"group_by": ""},
    ):
        response = client.get("/api/usage/", bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"]


def test_a_delegation_tree_is_counted_once(user):
    """A root's usage counts its tree (its children's runs share its limits);
    its columns hold its own figures, so sums over rows count each run once."""
    session = SessionFactory(user=user)
    ModelPrice.objects.create(
        model="m", input_usd_per_mtok=Decimal(1), output_usd_per_mtok=Decimal(10)
    )
    root = ExecutionFactory(session=session, status="running", model="m", usage={})
    child = ExecutionFactory(
        session=session,
        parent=root,
        root=root,
        depth=1,
        status="running",
        model="m",
        usage={},
    )
    services.execution_finish(
        child.pk,
        status="succeeded",
        usage={
            "requests": 1,
            "input_tokens": 100,
            "output_tokens": 10,
            "tool_calls": 0,
        },
    )
    services.execution_finish(
        root.pk,
        status="succeeded",
        usage={
            "requests": 3,
            "input_tokens": 400,
            "output_tokens": 40,
            "tool_calls": 1,
        },
    )
    root.refresh_from_db()
    child.refresh_from_db()
    assert (root.requests, root.input_tokens, root.output_tokens) == (2, 300, 30)
    assert (child.requests, child.input_tokens, child.output_tokens) == (1, 100, 10)
    assert root.usage["input_tokens"] == 400  # the tree, for its limits
    assert child.cost_usd == Decimal("0.0002") and root.cost_usd == Decimal("0.0006")
    assert Decimal(root.usage["cost_usd"]) == Decimal("0.0008")  # the tree's
    report = usage_report(
        AgentExecution.objects.all(), parse({}, timezone.now().date())
    )
    assert report["total"]["input_tokens"] == 400
    assert Decimal(report["total"]["cost_usd"]) == Decimal("0.0008")


def test_the_admin_shows_the_same_report(client, admin_user, user):
    session = SessionFactory(user=user)
    executed(
        session,
        at=timezone.now(),
        model="m-admin",
        requests=4,
        input_tokens=1234,
        output_tokens=56,
        cost_usd=Decimal("0.125"),
        priced=True,
    )
    client.force_login(admin_user)
    page = reverse("admin:usage_usagereport_changelist")
    shown = client.get(page, {"group_by": "model"})
    assert shown.status_code == 200
    row = shown.context["report"]["results"][0]
    assert row == {
        "key": "m-admin",
        "executions": 1,
        "requests": 4,
        "input_tokens": 1234,
        "output_tokens": 56,
        "cost_usd": "0.125000000000",
    }
    assert b"m-admin" in shown.content and b"0.125000000000" in shown.content
    mine_only = client.get(page, {"user": admin_user.username})
    assert mine_only.context["report"]["total"]["executions"] == 0
    bad = client.get(page, {"group_by": "week"})
    assert bad.status_code == 200 and b"group_by must be one of" in bad.content
