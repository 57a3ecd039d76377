"""OpenTelemetry traces: set up once per process, and the span of one turn.

Public surface:
    configure_tracing()         installs the SDK, the OTLP/HTTP exporter, the
                                Django, psycopg, Redis and httpx instrumentations
                                and pydantic-ai's instrumentation, when
                                OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise
                                does nothing (returns whether tracing is on)
    tracer_provider()           the provider configure_tracing installed, or None
    context_from_traceparent(value)
                                a copy of the current contextvars with the
                                caller's W3C trace as parent (None: no or an
                                invalid `traceparent`)
    parent_context_from_headers(headers)
                                the OpenTelemetry context a request's
                                `traceparent` header names, or None
    turn_span(attributes)       the `agentry.turn` span, current while it is open
    trace_id_of(span)           its 32 lowercase hex digits, or "" (no valid trace)

With the variable unset nothing is imported beyond the OpenTelemetry API (which
pydantic-ai already imports): spans are the API's non-recording ones, which
still carry a caller's trace id, so a turn started with a `traceparent` stores
that trace id even when this process exports nothing.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

_TRACER_NAME = "agentry"
# W3C trace-context, version 00 (later versions may append fields).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$")
_propagator = TraceContextTextMapPropagator()
_provider: Any = None
_configured = False


def configure_tracing() -> bool:
    """Sets tracing up for this process (once); returns whether it is on."""
    global _configured, _provider
    if _configured:
        return _provider is not None
    _configured = True
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return False
    # Imported here: a process that exports nothing never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.AGENTRY_SERVICE_NAME})
    )
    # The exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself
    # (endpoint, headers, timeout) and posts protobuf to <endpoint>/v1/traces.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    DjangoInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # pydantic-ai's own spans (agent run, model requests, tools; GenAI
    # semantic conventions) become children of the turn's span. Prompts,
    # answers and tool arguments stay out unless the operator asks for them.
    Agent.instrument_all(
        InstrumentationSettings(
            tracer_provider=provider,
            include_content=settings.AGENTRY_TRACE_CONTENT,
            include_binary_content=False,
        )
    )
    return True


def tracer_provider() -> Any:
    return _provider


def parent_context_from_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> otel_context.Context | None:
    """The trace a request's `traceparent` (and `tracestate`) header continues."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    if not _TRACEPARENT.match(carrier.get("traceparent", "")):
        return None
    return _propagator.extract(carrier)


def context_from_traceparent(value: str) -> contextvars.Context | None:
    """The contextvars a turn task runs in to continue the caller's trace."""
    if not value or not _TRACEPARENT.match(value):
        return None
    parent = _propagator.extract({"traceparent": value})
    if not trace.get_current_span(parent).get_span_context().is_valid:
        return None
    copied = contextvars.copy_context()
    copied.run(otel_context.attach, parent)
    return copied


@contextmanager
def turn_span(attributes: Mapping[str, Any]) -> Iterator[Span]:
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        "agentry.turn", attributes=dict(attributes)
    ) as span:
        yield span


def trace_id_of(span: Span) -> str:
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return ""
    return format(span_context.trace_id, "032x")
