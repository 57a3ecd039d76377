"""factory_boy factories for every model the API exposes."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.db import models

DEFAULT_PASSWORD = "Correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save_password(self, create, extracted, **kwargs):
        if create:
            self.save(update_fields=["password"])


class AgentFactory(factory.django.DjangoModelFactory):
    """An agent at version 1 with its first AgentVersion, made the way the API
    makes one (`agents.services.agent_create`)."""

    class Meta:
        model = "agents.Agent"

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    model = "test"
    instructions = "Be brief."

    @classmethod
    def _create(cls, model_class, *args, **fields):
        from agents.services import agent_create

        owner, tools = fields.pop("owner"), fields.pop("tools", ())
        return agent_create(owner=owner, fields=fields, tools=tools)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sessions_app.Session"

    user = factory.SubFactory(UserFactory)
    agent = factory.SubFactory(AgentFactory, owner=factory.SelfAttribute("..user"))
    title = factory.Sequence(lambda n: f"Session {n}")


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sessions_app.AgentExecution"

    session = factory.SubFactory(SessionFactory)
    agent = factory.SelfAttribute("session.agent")
    user = factory.SelfAttribute("session.user")
    status = "succeeded"
    input = "hello"
    output = "hi"
    model = "test"
    usage = factory.LazyFunction(
        lambda: {"requests": 1, "input_tokens": 5, "output_tokens": 2, "tool_calls": 0}
    )


class EventFactory(factory.django.DjangoModelFactory):
    """An event appended at the end of its session's log."""

    class Meta:
        model = "sessions_app.Event"

    session = factory.SubFactory(SessionFactory)
    author = "user"
    kind = "message"
    content = factory.Sequence(lambda n: f"message {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from sessions_app.models import Session

        session = kwargs["session"]
        Session.objects.filter(pk=session.pk).update(
            last_sequence=models.F("last_sequence") + 1
        )
        session.refresh_from_db(fields=["last_sequence"])
        kwargs.setdefault("sequence_number", session.last_sequence)
        return super()._create(model_class, *args, **kwargs)


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents.Listing"

    publisher = factory.SubFactory(UserFactory)
    source_agent = factory.SubFactory(
        AgentFactory, owner=factory.SelfAttribute("..publisher")
    )
    config = factory.LazyAttribute(lambda o: o.source_agent.config_snapshot())
    title = factory.Sequence(lambda n: f"Listing {n}")
    category = "testing"
    is_approved = True
