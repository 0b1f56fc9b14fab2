"""`stripe-sync-tui --headless serve`: a real process on a port the OS picks, the emulator as Stripe,
the test database: start, catch-up, the schedule, the API's bearer token, metrics after known work,
the drain on SIGTERM with deliveries in flight, and one scheduled sync per slot across two processes."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_dockerfile import healthcheck_command
from webhook_support import WEBHOOK_SECRET, engine_config, signed

from stripe_sync_core import StripeSync
from stripe_sync_core.database import Database
from stripe_sync_core.schedule import Schedule
from stripe_sync_emulator import StepClock, StripeEmulator

CLI = [sys.executable, "-m", "stripe_sync_tui.cli"]
API_KEY = "serve-test-api-key-0123456789abcdef"
FAST_STRIPE = {"max_requests_per_second": 0, "max_retries": 10, "initial_retry_delay_ms": 10,
               "max_retry_delay_ms": 100}


class Serve:
    """One `serve` process; its `--json` stdout read by a thread, stderr kept in a file."""

    def __init__(self, url: str, emu: StripeEmulator, tmp: Path, *args: str, api_key: str | None = API_KEY,
                 name: str = "serve", wait: bool = True) -> None:
        env = {**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent", "DATABASE_URL": url,
               "STRIPE_API_KEY": emu.secret_key, "STRIPE_API_BASE": emu.api_base,
               "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_SYNC_SETTINGS": json.dumps(FAST_STRIPE)}
        env.pop("PORT", None)
        env.pop("SYNC_INTERVAL", None)
        env.pop("SYNC_API_KEY", None)
        if api_key:
            env["SYNC_API_KEY"] = api_key
        self.stderr_path = tmp / f"{name}.stderr"
        self.proc = subprocess.Popen([*CLI, "--headless", "--json", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self.stderr_path.open("w"),
                                     stdin=subprocess.DEVNULL, text=True, env=env)
        self.records: list[dict] = []
        self._lines: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port, self.base = 0, ""
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait for the first line, which says where it serves."""
        self.port = self.expect("serving", timeout=60)["port"]
        self.base = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self._lines.put(json.loads(line))
        self._lines.put(None)

    def expect(self, kind: str, timeout: float = 30, **match: Any) -> dict:
        """The next record of `kind` (and the given fields) on stdout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind} record within {timeout} s; stderr:\n{self.stderr()}") from None
            if record is None:
                raise AssertionError(f"serve exited before a {kind} record; stderr:\n{self.stderr()}")
            self.records.append(record)
            if record.get("kind") == kind and all(record.get(k) == v for k, v in match.items()):
                return record

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (within `timeout`: the drain's promise)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http(method: str, url: str, body: bytes | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def metric_values(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def customer_event(i: int, tag: str) -> tuple[bytes, str]:
    now = int(time.time())
    obj = {"id": f"cus_serve{tag}{i}", "object": "customer", "created": now, "email": f"c{i}@example.com",
           "livemode": False}
    return signed({"id": f"evt_serve{tag}{i}", "object": "event", "type": "customer.updated", "created": now,
                   "data": {"object": obj}, "livemode": False})


def deliver(base: str, body: bytes, signature: str) -> int:
    return http("POST", f"{base}/webhooks", body, headers={"Stripe-Signature": signature,
                                                             "Content-Type": "application/json"})[0]


@pytest.fixture
def emulator():
    # When a test limits the rate, time moves 0.2 s per limited request: what a burst gets depends on its
    # requests, not on how fast a busy machine sends them.
    with StripeEmulator(seed=11, customers=5, webhook_retry_base_delay=0.05, webhook_retry_max_delay=0.25,
                        webhook_max_attempts=60, rate_limit_clock=StepClock(0.2)) as emu:
        yield emu


@pytest.fixture
def serves():
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


def test_serve_catches_up_runs_the_schedule_and_drains_on_sigterm_losing_no_delivery(
        clean_db, emulator, tmp_path, serves):
    async def backfill_then_miss_changes() -> set[str]:
        async with StripeSync(engine_config(clean_db, emulator)) as sync:
            await sync.process_until_done("customers")
        return {event["id"] for event in emulator.mutate_random(3)}  # while no listener runs

    missed = asyncio.run(backfill_then_miss_changes())
    serve = Serve(clean_db, emulator, tmp_path, "--sync-interval", "1s", "--sync-objects", "customers")
    serves.append(serve)
    assert serve.port > 0
    assert http("GET", f"{serve.base}/health")[:2] == (200, b'{"status": "ok"}')
    catch_up = serve.expect("catch_up")
    assert catch_up["state"] == "done" and catch_up["applied"] >= 1, catch_up
    with psycopg.connect(clean_db) as conn:
        logged = {row[0] for row in conn.execute("SELECT id FROM stripe._events")}
    assert missed <= logged
    first = serve.expect("scheduled_sync")  # the slot of the start: an incremental sync after the backfill
    assert first["outcome"] == "ok" and first["run_id"] is not None
    second = serve.expect("scheduled_sync")  # a later slot, by the server's clock: a run of its own
    assert second["slot"] > first["slot"] and second["outcome"] == "ok" and second["run_id"] != first["run_id"]
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0] >= 5

    # Deliveries in flight when SIGTERM arrives finish; nothing answered 2xx is missing afterwards, and
    # everything else got an answer Stripe retries (503, or no connection at all).
    deliveries = [customer_event(i, "drain") for i in range(300)]
    answers: dict[int, int | str] = {}
    signalled = threading.Event()
    answered_after_signal: list[int] = []

    async def send_all() -> None:
        queue_: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(deliveries)):
            queue_.put_nowait(i)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async def sender() -> None:
                while not queue_.empty():
                    i = queue_.get_nowait()
                    body, signature = deliveries[i]
                    before = signalled.is_set()
                    try:
                        async with session.post(f"{serve.base}/webhooks", data=body,
                                                headers={"Stripe-Signature": signature}) as response:
                            answers[i] = response.status
                            if response.status == 200 and not before and signalled.is_set():
                                answered_after_signal.append(i)
                    except aiohttp.ClientError as error:
                        answers[i] = type(error).__name__
                    if len(answers) >= 60 and not signalled.is_set():
                        serve.proc.send_signal(signal.SIGTERM)
                        signalled.set()

            await asyncio.gather(*(sender() for _ in range(32)))

    asyncio.run(send_all())
    assert serve.proc.wait(timeout=30) == 0
    drained = serve.expect("drained")
    assert drained["seconds"] < 30
    acknowledged = {f"evt_servedrain{i}" for i, status in answers.items() if status == 200}
    refused = {i: status for i, status in answers.items() if status != 200}
    assert answered_after_signal, "no delivery was in flight when SIGTERM arrived"
    assert all(status == 503 or isinstance(status, str) for status in refused.values()), refused
    with psycopg.connect(clean_db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM stripe._events WHERE id LIKE 'evt_servedrain%'")}
    assert acknowledged <= stored, f"acknowledged but not stored: {sorted(acknowledged - stored)[:5]}"


def test_the_api_needs_the_bearer_token_and_metrics_count_known_work(clean_db, emulator, tmp_path, serves):
    """Then a sync requested through the API is still running at SIGTERM: its chunks go back to pending."""
    serve = Serve(clean_db, emulator, tmp_path, "--sync-interval", "0")
    serves.append(serve)
    serve.expect("catch_up")
    for method, path in (("POST", "/sync"), ("POST", "/sync/single/cus_x"), ("GET", "/metrics")):
        for token in (None, "wrong-token-0123456789abcdef"):
            status, body, headers = http(method, serve.base + path, b"{}" if method == "POST" else None, token)
            assert status == 401, (path, token, body)
            assert b"Bearer" in body and API_KEY.encode() not in body
            assert headers.get("WWW-Authenticate", "").startswith("Bearer")
        status, _, _ = http(method, serve.base + path, None, headers={"Authorization": f"Basic {API_KEY}"})
        assert status == 401
    assert http("GET", f"{serve.base}/health")[0] == 200  # public
    assert deliver(serve.base, b"{}", "t=1,v1=nope") == 400  # public, and still checks signatures
    assert http("POST", f"{serve.base}/sync", b'{"objects": "nonsense"}', API_KEY)[0] == 400
    assert http("POST", f"{serve.base}/sync", b'{"since": "yesterday"}', API_KEY)[0] == 400

    _, before_text, _ = http("GET", f"{serve.base}/metrics", token=API_KEY)
    before = metric_values(before_text.decode())
    emulator.reset_stats()
    for i in range(3):
        assert deliver(serve.base, *customer_event(i, "metrics")) == 200
    status, body, _ = http("POST", f"{serve.base}/sync", json.dumps({"objects": ["customers"]}).encode(), API_KEY)
    assert status == 200, body
    assert json.loads(body)["run"]["customers"]["stored"] >= 5
    customer = emulator.objects("customers")[0]["id"]
    emulator.set_rate_limit(2)  # a burst of 2 requests, then 0.4 of one per request: the third sync is answered 429 first
    for _ in range(3):
        status, body, _ = http("POST", f"{serve.base}/sync/single/{customer}", None, API_KEY)
        assert status == 200 and json.loads(body)["id"] == customer
    assert http("POST", f"{serve.base}/sync/single/cus_doesnotexist", None, API_KEY)[0] == 404
    emulator.set_rate_limit(None)
    stripe_side = emulator.stats()

    status, text, headers = http("GET", f"{serve.base}/metrics", token=API_KEY)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    after = metric_values(text.decode())

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("stripe_sync_webhook_events_total", outcome="stored", status="200") == 3
    assert after[("stripe_sync_webhook_events_total", (("outcome", "InvalidSignature"), ("status", "400")))] == 1
    assert delta("stripe_sync_stripe_requests_total") == stripe_side["requests"]
    assert stripe_side["rate_limited"] >= 1
    assert delta("stripe_sync_stripe_rate_limited_total") == stripe_side["rate_limited"]
    assert delta("stripe_sync_stripe_retries_total") >= stripe_side["rate_limited"]
    assert delta("stripe_sync_sync_runs_total", trigger="api", outcome="ok") == 1
    assert after[("stripe_sync_sync_running", (("trigger", "api"),))] == 0
    with psycopg.connect(clean_db) as conn:
        customers = conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0]
    assert after[("stripe_sync_rows", (("table", "customers"),))] == customers
    assert after[("stripe_sync_webhook_lag_events", ())] >= 3
    assert ("stripe_sync_webhook_lag_seconds", (("quantile", "0.99"),)) in after
    assert after[("stripe_sync_open_runs", ())] == 0
    assert after[("stripe_sync_http_requests_total", (("route", "/sync"), ("status", "401")))] == 3  # no token, a wrong one, Basic
    assert after[("stripe_sync_up", ())] == 1
    assert API_KEY not in text.decode() and emulator.secret_key not in text.decode()

    emulator.set_latency(400)  # each Stripe request takes 0.4 s: the sync is still running at SIGTERM
    answer: dict[str, Any] = {}

    def post_sync() -> None:
        answer["sync"] = http("POST", f"{serve.base}/sync", json.dumps({"objects": "customers",
                                                                          "since": "2020-01-01"}).encode(), API_KEY)

    poster = threading.Thread(target=post_sync)
    poster.start()
    with psycopg.connect(clean_db, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT 1 FROM stripe._sync_obj_runs WHERE status = 'running'").fetchone():
            assert time.monotonic() < deadline, serve.stderr()
            time.sleep(0.02)
        assert serve.stop() == 0
        poster.join(30)
        status, body, _ = answer["sync"]
        assert status == 503 and b"interrupted" in body
        chunks = dict(conn.execute("SELECT status, count(*) FROM stripe._sync_obj_runs c JOIN stripe._sync_runs r "
                                   "ON r.id = c.run_id WHERE r.closed_at IS NULL GROUP BY status").fetchall())
    assert "running" not in chunks and chunks.get("pending", 0) >= 1


def test_two_serve_processes_run_the_schedule_once_per_interval(clean_db, emulator, tmp_path, serves):
    """Also: without SYNC_API_KEY the API is off and says how to turn it on; the Dockerfile's health check
    passes against a serving process and fails once it stopped."""
    args = ("--sync-interval", "1s", "--sync-objects", "customers", "--no-catch-up")
    pair = [Serve(clean_db, emulator, tmp_path, *args, api_key=None, name=f"serve{n}", wait=False) for n in (1, 2)]
    serves.extend(pair)
    for serve in pair:  # started together
        serve.ready()
    for method, path in (("POST", "/sync"), ("GET", "/metrics")):
        status, body, _ = http(method, pair[0].base + path, None, "anything-0123456789abcdef")
        assert status == 403 and b"SYNC_API_KEY" in body
    health = healthcheck_command(pair[0].port)  # the Dockerfile's HEALTHCHECK, aimed at this process
    health[0] = sys.executable if health[0] == "python" else health[0]
    assert subprocess.run(health, timeout=30, capture_output=True).returncode == 0
    ran: list[dict] = []
    deadline = time.monotonic() + 45
    while len(ran) < 3:
        assert time.monotonic() < deadline, [s.stderr() for s in pair]
        for serve in pair:
            try:
                ran.append(serve.expect("scheduled_sync", timeout=0.2))
            except AssertionError:
                pass
    for serve in pair:
        assert serve.stop() == 0
    assert subprocess.run(health, timeout=30, capture_output=True).returncode != 0
    slots = [record["slot"] for record in ran]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {sorted(slots)}"
    with psycopg.connect(clean_db) as conn:
        leases = dict(conn.execute("SELECT slot, holder FROM stripe._service_lease "
                                   "WHERE job = 'incremental_sync'").fetchall())
    assert {record["slot"]: record["holder"] for record in ran}.items() <= leases.items()


async def test_one_claim_per_slot_among_concurrent_holders(clean_db):
    database = Database(clean_db, max_size=8)
    await database.open()
    try:
        schedules = [Schedule(database, "job", 10**9, f"holder{i}") for i in range(8)]
        claims = await asyncio.gather(*(schedule.claim() for schedule in schedules))
        won = [(schedule.holder, claim) for schedule, claim in zip(schedules, claims, strict=True) if claim]
        assert len(won) == 1
        holder, claim = won[0]
        await schedules[0].finish(claim, "ok")
        assert [(row["holder"], row["outcome"]) for row in await schedules[0].history()] == [(holder, "ok")]
        assert await Schedule(database, "other job", 10**9, "x").claim() is not None  # jobs apart
        with pytest.raises(ValueError, match="more than 0"):
            Schedule(database, "job", 0, "x")
    finally:
        await database.close()


def test_a_scheduled_sampled_verify_finds_drift_and_reports_it(clean_db, emulator, tmp_path, serves):
    """Drift no event announced (a change made silently in Stripe) is found by serve's own sampled verify:
    reported on stdout, kept for screen 1 (`stripe._verify_results`) and in the metrics; a bad setting
    is refused before anything starts."""
    env = {**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent", "DATABASE_URL": clean_db,
           "STRIPE_API_KEY": emulator.secret_key, "STRIPE_API_BASE": emulator.api_base,
           "STRIPE_SYNC_SETTINGS": json.dumps(FAST_STRIPE)}
    backfill = subprocess.run([*CLI, "--headless", "backfill", "customers"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert backfill.returncode == 0, backfill.stderr
    quiet = emulator.objects("customers")[0]["id"]
    emulator.action("customers", quiet, "update", {"name": "Renamed Quietly"}, silent=True)

    refused = subprocess.run([*CLI, "--headless", "serve", "--port", "0", "--verify-interval", "daily"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "invalid verify interval 'daily'" in refused.stderr, refused.stderr

    serve = Serve(clean_db, emulator, tmp_path, "--sync-interval", "0", "--sync-objects", "customers",
                  "--verify-interval", "1h", "--verify-sample", "50", "--no-catch-up")
    serves.append(serve)
    report = serve.expect("scheduled_verify", timeout=60)
    assert report["outcome"] == "drift: 1 row(s)" and report["differences"] == {"customers": 1}, report
    assert report["repaired"] == 0
    status, body, _ = http("GET", f"{serve.base}/metrics", token=API_KEY)
    metrics = metric_values(body.decode())
    assert metrics[("stripe_sync_verify_drift_rows", (("kind", "changed"), ("object", "customers")))] == 1
    assert metrics[("stripe_sync_verify_drift_rows", (("kind", "missing"), ("object", "customers")))] == 0
    assert serve.stop() == 0
    with psycopg.connect(clean_db) as conn:
        changed = conn.execute("SELECT changed FROM stripe._verify_results WHERE object = 'customers'").fetchone()
    assert changed == (1,)
