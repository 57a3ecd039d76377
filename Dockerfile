# Agentry: daphne serving HTTP + websockets, as `make run` does, without dev settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH="/app/.venv/bin:$PATH" \
    MEDIA_ROOT=/data/uploads \
    REPO_ROOT=/data/workspace \
    AGENTRY_WORKSPACES=/data/workspaces

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

RUN groupadd --system agentry \
    && useradd --system --gid agentry --home-dir /app --shell /usr/sbin/nologin agentry

WORKDIR /app

# Dependencies first, so code changes reuse this layer.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
RUN uv sync --frozen --no-dev \
    && python manage.py collectstatic --noinput \
    && mkdir -p /data/uploads /data/workspace /data/workspaces \
    && chown -R agentry:agentry /data

USER agentry
EXPOSE 8000
VOLUME ["/data/uploads", "/data/workspace", "/data/workspaces"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"

CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8000 config.asgi:application"]
