"""Traces, metrics and structured logs of the server (DESIGN.md section 12).

Modules:
    tracing      OpenTelemetry set-up (only when OTEL_EXPORTER_OTLP_ENDPOINT is
                 set) and the `agentry.turn` span
    metrics      prometheus_client metrics, multiprocess-safe
    logs         context ids and the JSON log format (LOG_FORMAT=json)
    middleware   X-Request-ID, the caller's `traceparent`, open websockets
    turns        the turn runner's hooks: span, metrics and `turn finished` line
    views        `GET /metrics`
"""
