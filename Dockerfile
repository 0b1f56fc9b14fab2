# stripe-sync-tui as a service: `stripe-sync-tui --headless serve` (webhooks, HTTP API, metrics, scheduled
# incremental sync). Settings come from the environment: DATABASE_URL, STRIPE_API_KEY, SYNC_API_KEY,
# SYNC_INTERVAL, STRIPE_WEBHOOK_SECRET (see README, "Run as a service").
#   docker build -t stripe-sync .
#   docker run --stop-timeout 30 -p 8787:8787 -e DATABASE_URL -e STRIPE_API_KEY -e SYNC_API_KEY stripe-sync
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY src ./src
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stripesync

# Numeric, so that an orchestrator's "run as non-root" check can verify it.
USER 10001:10001

EXPOSE 8787
# Liveness only (/health answers while the process serves; 503 while it drains). No curl in the slim
# image: Python's standard library makes the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8787/health', timeout=4).status != 200)"]
# SIGTERM drains (new requests 503, running syncs back to pending, deliveries in flight answered) in
# under 30 s: give the container that long to stop (docker run --stop-timeout 30; Kubernetes' default
# grace period is 30 s).
STOPSIGNAL SIGTERM
CMD ["stripe-sync-tui", "--headless", "--json", "serve", "--host", "0.0.0.0", "--port", "8787"]
