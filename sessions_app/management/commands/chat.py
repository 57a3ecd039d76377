"""`manage.py chat AGENT [--session ID] [--user USERNAME]`: chat in the terminal.

The answer streams as the model writes it; tool calls and their results are
shown as they happen. Turns go through the same runner as every other client,
so the conversation is stored and visible in the API and the browser.
Ctrl-C during an answer cancels that turn; Ctrl-D (or /quit) leaves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from agents.models import Agent
from agents.selectors import agent_answers
from sessions_app import broadcast, runner, selectors, services
from sessions_app.frames import ends_turn
from sessions_app.models import Session

QUIT = {"/quit", "/exit"}


class Command(BaseCommand):
    help = "Chat with an agent in the terminal, streaming its answers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="The agent's id or slug.")
        parser.add_argument(
            "--session", help="Continue this session instead of starting one."
        )
        parser.add_argument(
            "--user", help="Chat as this user (default: the agent's owner)."
        )
        parser.add_argument(
            "--approve",
            choices=["ask", "all", "none"],
            default="ask",
            help="Tool calls that need approval: ask (default), approve all, or deny all.",
        )
        parser.add_argument(
            "--message",
            action="append",
            default=[],
            help="Send this message instead of reading the terminal (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["user"]) if options["user"] else None
        agent = self._agent(options["agent"], options["user"])
        user = user or agent.owner
        if not agent_answers(agent=agent, user=user):
            raise CommandError(
                f"{user} cannot chat with {agent.slug!r}: it is inactive, or "
                "another user's private agent."
            )
        session = self._session(options["session"], agent, user)
        self.stdout.write(
            self.style.SUCCESS(f"Chatting with {agent.name} (session {session.pk}).")
            + " Ctrl-C cancels an answer, Ctrl-D leaves."
        )
        scripted = options["message"]
        # `_out` is the stream OutputWrapper wraps; the stubs type it a callable.
        out: TextIO = self.stdout._out  # type: ignore[assignment]
        chat = TerminalChat(session, user, out, approve=options["approve"])
        asyncio.run(chat.run(scripted or None))

    def _user(self, username: str) -> Any:
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    def _agent(self, ref: str, username: str | None) -> Agent:
        agents = Agent.objects.select_related("owner")
        try:
            return agents.get(pk=uuid.UUID(ref))
        except (ValueError, Agent.DoesNotExist):
            pass
        matches = agents.filter(slug=ref)
        if username:
            matches = matches.filter(
                Q(owner__username=username) | Q(visibility="public")
            )
        found = list(matches[:2])
        if not found:
            raise CommandError(f"No agent with id or slug {ref!r}.")
        if len(found) > 1:
            raise CommandError(
                f"Several agents have the slug {ref!r}; give --user or the id."
            )
        return found[0]

    def _session(self, ref: str | None, agent: Agent, user: Any) -> Session:
        if ref is None:
            return services.session_create(
                user=user, agent=agent, title="Terminal chat"
            )
        session = selectors.session_of(user=user, session_id=ref)
        if session is None or session.agent_id != agent.pk:
            raise CommandError(f"No session {ref!r} of {user} with {agent.slug!r}.")
        return session


class TerminalChat:
    def __init__(
        self, session: Session, user: Any, out: TextIO, approve: str = "ask"
    ) -> None:
        self.session_id, self.user_id, self.out = str(session.pk), user.pk, out
        self.approve = approve
        self.pending: list[dict[str, Any]] = []
        # Delegated work is indented by its depth (`delegation` state events
        # say each child's depth); `shown` is the depth of the text on screen.
        self.depths: dict[str, int] = {}
        self.shown = 0
        self.indent = ""
        self.at_line_start = True

    def write(self, text: str) -> None:
        if self.indent:
            lines = text.split("\n")
            text = "\n".join(
                self.indent + line if line and (i or self.at_line_start) else line
                for i, line in enumerate(lines)
            )
        if text:
            self.at_line_start = text.endswith("\n")
        self.out.write(text)
        self.out.flush()

    def nest(self, event: dict[str, Any], streaming: bool) -> tuple[int, bool]:
        """The depth of the event's run (from the delegation events seen so
        far); ends a line another run's text left open."""
        execution = str(event.get("execution") or "")
        placed = (event.get("metadata") or {}).get("delegation")
        if event["kind"] == "state" and isinstance(placed, dict):
            self.depths[execution] = int(placed.get("depth") or 1)
        depth = self.depths.get(execution, 0)
        if depth != self.shown and streaming:
            self.write("\n")
            streaming = False
        self.shown = depth
        self.indent = "    " * depth
        return depth, streaming

    async def run(self, scripted: list[str] | None) -> None:
        loop = asyncio.get_running_loop()
        lines = iter(scripted) if scripted is not None else None
        while True:
            if lines is not None:
                content = next(lines, None)
                if content is None:
                    return
                self.write(f"you> {content}\n")
            else:
                try:
                    content = await loop.run_in_executor(None, input, "you> ")
                except (EOFError, KeyboardInterrupt):
                    self.write("\n")
                    return
            if content.strip() in QUIT:
                return
            if content.strip():
                await self.turn(content)

    async def turn(self, content: str) -> None:
        async with broadcast.subscribe(self.session_id) as frames:
            try:
                submission = await runner.submit_turn(
                    runner.TurnRequest(
                        session_id=self.session_id,
                        user_id=self.user_id,
                        content=content,
                    )
                )
            except runner.TurnRejected as exc:
                self.write(f"! {exc.message}\n")
                return
            execution_id = str(submission.execution.pk)
            while True:
                try:
                    status = await self.relay(frames, execution_id)
                except (KeyboardInterrupt, asyncio.CancelledError):
                    await runner.cancel_turn(self.session_id)
                    status = await self.relay(frames, execution_id)
                if status != "awaiting_approval":
                    return
                decisions = await self.decide()
                try:
                    await runner.submit_approval(
                        execution_id=execution_id,
                        user_id=self.user_id,
                        decisions=decisions,
                        via="terminal",
                    )
                except runner.TurnRejected as exc:
                    self.write(f"! {exc.message}\n")
                    return

    async def decide(self) -> dict[str, bool]:
        decisions = {}
        pending, self.pending = self.pending, []
        for call in pending:
            args = json.dumps(call.get("args"), ensure_ascii=False)
            question = f"  approve {call['tool_name']}({args})? [y/N] "
            if self.approve == "ask":
                loop = asyncio.get_running_loop()
                try:
                    answer = await loop.run_in_executor(None, input, question)
                except EOFError:
                    answer = ""
            else:
                answer = "y" if self.approve == "all" else "n"
                self.write(f"{question}{answer}\n")
            decisions[call["tool_call_id"]] = answer.strip().lower() in ("y", "yes")
        return decisions

    async def relay(self, frames: broadcast.Subscription, execution_id: str) -> str:
        """Shows the turn's frames until it ends or pauses; returns its status."""
        streaming = False
        while True:
            frame = await frames.next()
            if frame is None:
                continue
            fields: Mapping[str, Any] = frame
            if fields["type"] == "event":
                streaming = self.show_event(fields["event"], streaming)
            elif ends_turn(frame) and fields["execution"]["id"] == execution_id:
                self.show_execution(fields["execution"], streaming)
                status: str = fields["execution"]["status"]
                return status

    def show_event(self, event: dict[str, Any], streaming: bool) -> bool:
        depth, streaming = self.nest(event, streaming)
        placed = (event.get("metadata") or {}).get("delegation")
        if event["kind"] == "state" and isinstance(placed, dict):
            step = f"[{placed['step']}] " if placed.get("step") else ""
            self.indent = "    " * (depth - 1)
            self.write(f"  -> {step}{placed.get('agent_name', 'agent')}: ")
            self.write(f"{event['content']}\n")
            self.indent = "    " * depth
            return False
        if event["partial"]:
            if not streaming:
                self.write("agent> ")
            self.write(event["content"])
            return True
        if event["kind"] == "tool_call":
            args = json.dumps(event["metadata"].get("args"), ensure_ascii=False)
            self.write(
                f"{chr(10) if streaming else ''}  [tool] {event['content']}({args})\n"
            )
            return False
        if event["kind"] == "tool_result":
            mark = "error" if event["metadata"].get("is_error") else "result"
            text = event["content"].replace("\n", " ")
            self.write(f"  [{mark}] {text[:200]}{'…' if len(text) > 200 else ''}\n")
            return False
        if event["kind"] == "state" and "approval_requests" in event["actions"]:
            # Each paused level of a delegation tree lists its own calls (shown
            # in its nested block); the turn's decision answers them all.
            self.pending += event["actions"]["approval_requests"]
            self.write(
                f"{chr(10) if streaming else ''}  [waiting] {event['content']}\n"
            )
            return False
        if event["kind"] == "error":
            self.write(f"{chr(10) if streaming else ''}! {event['content']}\n")
            return False
        finished = event["turn_complete"] or (depth and event["kind"] == "message")
        if event["author"] == "agent" and finished and not streaming:
            # Structured output or a model that does not stream: show the whole answer.
            self.write(f"agent> {event['content']}")
            return True
        return streaming

    def show_execution(self, execution: dict[str, Any], streaming: bool) -> None:
        usage = execution.get("usage") or {}
        summary = (
            f"[{execution['status']}, {usage.get('input_tokens', 0)} in / "
            f"{usage.get('output_tokens', 0)} out tokens, {execution.get('duration_ms') or 0} ms]"
        )
        self.write(("\n" if streaming else "") + summary + "\n")


__all__ = ["Command", "TerminalChat"]
