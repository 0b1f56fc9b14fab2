"""Shared pieces of the webhook, managed-webhook and listener tests: the emulator, an engine wired to it,
ground-truth comparison, signed payloads and a TCP proxy that can make PostgreSQL unreachable."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import stripe
from backfill_support import EMULATOR_TYPE
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.registry import (
    ENTITLEMENT_SUMMARY_EVENT,
    EVENT_TYPES,
    REGISTRY,
    object_path,
    retrieve_expansions,
)
from stripe_sync_emulator import StripeEmulator

WEBHOOK_SECRET = "whsec_testSecretForWebhookTests0001"

"""Registry tables the emulator names differently."""

SILENT_CHANGES = {"charges", "invoice_items"}
"""Types the emulator (like Stripe) changes without an event for the object itself (a charge becomes
`disputed` when a dispute is created, an invoice item gets its `invoice` when attached); webhooks
cannot see those changes, so the comparison skips them."""


def engine_config(url: str, emu: StripeEmulator, **settings: object) -> SyncConfig:
    return SyncConfig(database_url=url, stripe_secret_key=emu.secret_key, stripe_api_base=emu.api_base,
                      stripe_webhook_secret=WEBHOOK_SECRET, max_requests_per_second=0, max_retries=2,
                      initial_retry_delay_ms=10, max_retry_delay_ms=50).with_overrides(**settings)


def signed(event: dict, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event)
    return payload.encode(), stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp if timestamp is not None else int(time.time()))


def event(event_type: str, obj: dict, created: int, event_id: str | None = None, **extra: object) -> dict:
    return {"id": event_id or f"evt_test_{event_type}_{obj.get('id')}_{created}", "object": "event",
            "type": event_type, "created": created, "data": {"object": obj}, "livemode": False, **extra}


def truth(emu: StripeEmulator, table: str, object_id: str, account: str | None = None) -> dict | None:
    """The object as the emulator has it now (with the fields sent only when asked, which the engine
    asks for); None when it does not exist (or was deleted)."""
    if table == "plans":
        found = next((o for o in emu.objects("plans", account) if o["id"] == object_id), None)
    else:
        found = emu.get(EMULATOR_TYPE.get(table, table), object_id, account)
    if found is None or found.get("deleted"):
        return None
    entry = REGISTRY[table]
    if entry.includable and entry.retrieve_path:
        options = {"stripe_account": account} if account else {}
        found = emu_client(emu).raw_request(  # type: ignore[assignment]
            "get", object_path(entry.retrieve_path, id=object_id), expand=retrieve_expansions(entry), **options).data
    return found


def _describe(stored: object, expected: object, path: str = "") -> str:
    """Where two JSON values first differ, for a readable failure."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for key in sorted(set(stored) | set(expected)):
            if stored.get(key) != expected.get(key):
                return _describe(stored.get(key), expected.get(key), f"{path}.{key}")
    if isinstance(stored, list) and isinstance(expected, list) and len(stored) == len(expected):
        for i, (a, b) in enumerate(zip(stored, expected, strict=True)):
            if a != b:
                return _describe(a, b, f"{path}[{i}]")
    return f"{path or '.'}: stored {str(stored)[:80]} != {str(expected)[:80]}"


def comparable(obj: dict) -> dict:
    """An object as webhooks can know it. A price update changes the price and plan embedded in every
    subscription item on retrieve, but Stripe sends no subscription event for it: compare their ids."""
    obj = without(obj, "line_items")
    items = obj.get("items")
    if obj.get("object") == "subscription" and isinstance(items, dict):
        data = [{**item, **{k: item[k]["id"] for k in ("price", "plan") if isinstance(item.get(k), dict)}}
                for item in items.get("data", [])]
        obj["items"] = {**items, "data": data}
    return obj


def without(obj: dict, *fields: str) -> dict:
    return {k: v for k, v in obj.items() if k not in fields}


async def mismatches(sync: StripeSync, emu: StripeEmulator, events: list[dict],
                     account: str | None = None) -> list[str]:
    """Objects the events touched whose stored state differs from the emulator's current state."""
    touched = {}
    for ev in events:
        entry = EVENT_TYPES.get(ev["type"])
        obj_id = ev["data"]["object"].get("id")
        if entry and obj_id and ev["type"] != ENTITLEMENT_SUMMARY_EVENT and entry.table not in SILENT_CHANGES:
            touched[(entry.table, obj_id)] = ev["type"]
    problems = []
    for (table, obj_id), last_type in sorted(touched.items()):
        row = await sync.database.fetch_one(
            f"SELECT _raw_data, deleted, _account_id FROM stripe.{table} WHERE id = %s", (obj_id,))
        expected = truth(emu, table, obj_id, account)
        if row is not None and row["_account_id"] != (account or emu.account_id):
            problems.append(f"{table} {obj_id}: stored under {row['_account_id']}")
        if expected is None:
            if row is not None and not row["deleted"]:
                problems.append(f"{table} {obj_id}: deleted in the emulator, live in the database")
        elif row is None or row["deleted"]:
            problems.append(f"{table} {obj_id}: missing ({last_type})")
        elif comparable(row["_raw_data"]) != comparable(expected):
            stored, wanted = comparable(row["_raw_data"]), comparable(expected)
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            problems.append(f"{table} {obj_id}: differs in {changed} ({last_type}): "
                            + "; ".join(_describe(stored.get(k), wanted.get(k)) for k in changed))
    return problems


async def stored_entitlements(sync: StripeSync) -> dict[str, set[str]]:
    rows = await sync.database.fetch_all("SELECT id, customer FROM stripe.active_entitlements")
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["customer"], set()).add(row["id"])
    return found


def emulator_entitlements(emu: StripeEmulator, sync_customers: set[str] | None = None) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for customer in emu.objects("customers"):
        if sync_customers is not None and customer["id"] not in sync_customers:
            continue
        page = emu_api_get(emu, "/v1/entitlements/active_entitlements", {"customer": customer["id"], "limit": 100})
        ids = {e["id"] for e in page["data"]}
        if ids:
            found[customer["id"]] = ids
    return found


def emu_client(emu: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base}, max_network_retries=0)


def emu_api_get(emu: StripeEmulator, path: str, params: dict | None = None) -> dict:
    return emu_client(emu).raw_request("get", path, **(params or {})).data  # type: ignore[union-attr]


def emu_api_post(emu: StripeEmulator, path: str, params: dict | None = None) -> dict:
    return emu_client(emu).raw_request("post", path, **(params or {})).data  # type: ignore[union-attr]


async def count(sync: StripeSync, sql: str, params: tuple = ()) -> int:
    row = await sync.database.fetch_one(f"SELECT count(*) AS n FROM ({sql}) AS q", params)
    assert row is not None
    return row["n"]


class PostgresProxy:
    """A TCP proxy in front of PostgreSQL that can refuse and cut connections on demand.

    `down()` closes the listening socket and aborts every open connection, so the engine sees exactly
    what it would when the database server goes away; `up()` listens again on the same port. While down,
    the port stays bound to a socket that does not listen (connections are refused, and no other program
    can take the port meanwhile).
    `freeze()` keeps every connection open but forwards nothing (a server stopped with SIGSTOP, a
    network partition) until `thaw()`.
    """

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        host = str(params.get("host") or "")
        if not host:
            pytest.skip("the database proxy needs the database's host or socket directory")
        port = int(params.get("port") or 5432)
        # The embedded server listens on a Unix socket only: the proxy's TCP side stays the same.
        self.target: tuple[str, int] | str = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        self.port = 0
        self.url = ""
        self._params = params
        self._server: asyncio.Server | None = None
        self._reserved: socket.socket | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def start(self) -> PostgresProxy:
        await self.up()
        self.url = make_conninfo("", **{**self._params, "host": "127.0.0.1", "port": str(self.port)})
        return self

    async def up(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            self._reserved = socket.socket()
            self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._reserved.bind(("127.0.0.1", self.port))
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        await self.down()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.target)
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._thawed.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers -= {writer, upstream_writer}
