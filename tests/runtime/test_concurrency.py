"""Concurrency: sequence numbers under parallel writers, the multitask
policies under 20 simultaneous messages, and recovery of turns whose process
died."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
import weakref

import pytest
from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from sessions_app import lifecycle, services
from sessions_app.models import AgentExecution, Event
from tests.plugins.runtime import is_partial, is_status, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)


def sequence_of(session) -> list[int]:
    return list(
        Event.objects.filter(session=session)
        .order_by("sequence_number")
        .values_list("sequence_number", flat=True)
    )


def test_parallel_appends_get_unique_gapless_numbers(user, make_session):
    session = make_session(user)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(15):
                services.event_append(
                    session.pk, services.EventSpec(author="system", content="x")
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sequence_of(session) == list(range(1, 121))
    session.refresh_from_db()
    assert session.last_sequence == 120


async def open_clients(ws_connect, user, session, count):
    return [await ws_connect(user, session) for _ in range(count)]


async def test_reject_policy_admits_one_of_twenty_simultaneous_messages(
    fake_llm, user, make_session, ws_connect
):
    session = await sync_to_async(make_session)(user)
    clients = await open_clients(ws_connect, user, session, 20)
    await asyncio.gather(
        *(
            c.send({"type": "message", "content": f"[[tokens=20 delay=10]] n{i}"})
            for i, c in enumerate(clients)
        )
    )
    outcomes = await asyncio.gather(
        *(
            c.until(lambda f: f["type"] == "error" or is_status("running")(f))
            for c in clients
        )
    )
    busy = [o for o in outcomes if o[-1]["type"] == "error"]
    assert all(o[-1]["error"]["code"] == "session_busy" for o in busy)
    await clients[0].until(is_terminal)
    assert await AgentExecution.objects.filter(session=session).acount() == 1
    assert await Event.objects.filter(session=session, author="user").acount() == 1
    assert await sync_to_async(sequence_of)(session) == [1, 2]
    for c in clients:
        await c.close()


async def test_enqueue_policy_runs_twenty_messages_one_after_another(
    fake_llm, user, make_session, ws_connect
):
    session = await sync_to_async(make_session)(
        user, configuration={"multitask": "enqueue"}
    )
    clients = await open_clients(ws_connect, user, session, 20)
    await asyncio.gather(
        *(
            c.send({"type": "message", "content": f"[[tokens=3 delay=2]] n{i}"})
            for i, c in enumerate(clients)
        )
    )
    async with asyncio.timeout(60):
        while (
            await AgentExecution.objects.filter(
                session=session, status="succeeded"
            ).acount()
            < 20
        ):
            await asyncio.sleep(0.1)
    executions = [
        x
        async for x in AgentExecution.objects.filter(session=session).order_by(
            "created_at"
        )
    ]
    for earlier, later in itertools.pairwise(executions):
        assert later.started_at >= earlier.finished_at, (
            "turns of a session never overlap, FIFO"
        )
    assert await sync_to_async(sequence_of)(session) == list(range(1, 41))
    for c in clients:
        await c.close()


async def test_interrupt_policy_leaves_one_winner_and_no_overlap(
    fake_llm, user, make_session, ws_connect
):
    session = await sync_to_async(make_session)(
        user, configuration={"multitask": "interrupt"}
    )
    clients = await open_clients(ws_connect, user, session, 20)
    await asyncio.gather(
        *(
            c.send({"type": "message", "content": f"[[tokens=30 delay=5]] n{i}"})
            for i, c in enumerate(clients)
        )
    )
    async with asyncio.timeout(60):
        while (
            await AgentExecution.objects.filter(
                session=session, status__in=["queued", "running"]
            ).aexists()
            or await AgentExecution.objects.filter(session=session).acount() < 20
        ):
            await asyncio.sleep(0.1)
    executions = [
        x
        async for x in AgentExecution.objects.filter(session=session).order_by(
            "created_at"
        )
    ]
    assert executions[-1].status == "succeeded"
    assert {x.status for x in executions} <= {"succeeded", "cancelled"}
    ran = sorted((x for x in executions if x.started_at), key=lambda x: x.started_at)
    for earlier, later in itertools.pairwise(ran):
        assert later.started_at >= earlier.finished_at
    seqs = await sync_to_async(sequence_of)(session)
    assert seqs == list(range(1, len(seqs) + 1))
    for c in clients:
        await c.close()


def test_sweep_interrupts_turns_of_dead_processes_out_of_takeovers(
    user, make_session, settings
):
    settings.AGENTRY_TURN_MAX_ATTEMPTS = 0
    session = make_session(user)
    opened = services.turn_open(
        session=session,
        user_id=user.pk,
        content="hi",
        metadata={},
        client_message_id="",
        policy="reject",
        model="x",
    )
    AgentExecution.objects.filter(pk=opened.execution.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert lifecycle.sweep_stale_executions_sync() == 1
    execution = AgentExecution.objects.get(pk=opened.execution.pk)
    assert execution.status == "interrupted" and execution.error_code == "interrupted"
    error = Event.objects.get(session=session, kind="error")
    assert (error.error_code, error.sequence_number) == ("interrupted", 2)
    assert lifecycle.sweep_stale_executions_sync() == 0, (
        "a swept turn is not swept twice"
    )


def test_fresh_running_turn_is_not_swept(user, make_session):
    session = make_session(user)
    services.turn_open(
        session=session,
        user_id=user.pk,
        content="hi",
        metadata={},
        client_message_id="",
        policy="reject",
        model="x",
    )
    assert lifecycle.sweep_stale_executions_sync() == 0


async def test_a_message_to_a_session_whose_turn_died_for_good_is_accepted(
    fake_llm, user, make_session, ws_connect, settings
):
    settings.AGENTRY_TURN_MAX_ATTEMPTS = 0
    session = await sync_to_async(make_session)(user)
    opened = await sync_to_async(services.turn_open)(
        session=session,
        user_id=user.pk,
        content="lost",
        metadata={},
        client_message_id="",
        policy="reject",
        model="x",
    )
    await AgentExecution.objects.filter(pk=opened.execution.pk).aupdate(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=2]] hello again"})
    frames = await ws.until(
        lambda f: is_terminal(f) and f["execution"]["input"].endswith("again")
    )
    assert frames[-1]["execution"]["status"] == "succeeded"
    statuses = [
        x.status
        async for x in AgentExecution.objects.filter(session=session).order_by(
            "created_at"
        )
    ]
    assert statuses == ["interrupted", "succeeded"]


async def test_a_process_never_sweeps_its_own_running_turns(
    fake_llm, user, make_session, ws_connect
):
    session = await sync_to_async(make_session)(user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=40 delay=10]] keep going"})
    await ws.until(is_partial)
    await AgentExecution.objects.filter(session=session).aupdate(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert await lifecycle.sweep_stale_executions() == 0
    frames = await ws.until(is_terminal)
    assert frames[-1]["execution"]["status"] == "succeeded"


async def test_running_turns_heart_beat(
    fake_llm, user, make_session, ws_connect, monkeypatch
):
    monkeypatch.setattr(lifecycle, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(lifecycle, "_supervised_loops", weakref.WeakSet())
    session = await sync_to_async(make_session)(user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=60 delay=10]] keep going"})
    await ws.until(is_partial)
    execution = await AgentExecution.objects.aget(session=session)
    await asyncio.sleep(0.4)
    await execution.arefresh_from_db()
    assert execution.heartbeat_at > execution.started_at + dt.timedelta(
        milliseconds=100
    )
    await ws.until(is_terminal)


def test_saving_a_stale_session_keeps_the_event_counter(user, make_session):
    session = make_session(user)
    stale = type(session).objects.get(pk=session.pk)
    services.event_append(session.pk, services.EventSpec(author="system", content="x"))
    stale.title = "renamed while a turn runs"
    stale.save()
    services.event_append(session.pk, services.EventSpec(author="system", content="y"))
    assert sequence_of(session) == [1, 2]
    stale.refresh_from_db()
    assert (stale.title, stale.last_sequence) == ("renamed while a turn runs", 2)


def test_saving_a_session_deleted_meanwhile_does_not_recreate_it(user, make_session):
    session = make_session(user)
    stale = type(session).objects.get(pk=session.pk)
    type(session).objects.filter(pk=session.pk).delete()
    stale.title = "too late"
    with pytest.raises(type(session).DoesNotExist):
        stale.save()
    assert not type(session).objects.filter(pk=session.pk).exists()


async def test_a_cancel_sent_through_the_channel_layer_reaches_the_turn(
    fake_llm, user, make_session, ws_connect
):
    """What another process does to cancel a turn it does not run."""
    from sessions_app import broadcast

    session = await sync_to_async(make_session)(user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=300 delay=20]] long"})
    await ws.until(is_partial)
    execution = await AgentExecution.objects.aget(session=session)
    await broadcast.send_control(
        {"type": "turn.cancel", "execution": str(execution.pk)}
    )
    frames = await ws.until(is_terminal, timeout=5)
    assert frames[-1]["execution"]["status"] == "cancelled"


def test_events_appended_together_are_numbered_in_order_and_a_deleted_session_takes_none(
    user, make_session
):
    session = make_session(user)
    services.event_append(session.pk, services.EventSpec(author="system", content="a"))
    stored = services.events_append(
        session.pk,
        [services.EventSpec(author="system", content=c) for c in ("b", "c", "d")],
    )
    assert [(e.content, e.sequence_number) for e in stored] == [
        ("b", 2),
        ("c", 3),
        ("d", 4),
    ]
    assert [e.pk for e in stored] == list(
        Event.objects.filter(session=session)
        .exclude(content="a")
        .order_by("sequence_number")
        .values_list("pk", flat=True)
    )
    assert all(e.created_at is not None for e in stored)

    gone = session.pk
    type(session).objects.filter(pk=gone).delete()
    with pytest.raises(type(session).DoesNotExist):
        services.event_append(gone, services.EventSpec(author="system", content="x"))
    assert not Event.objects.filter(session_id=gone).exists()
