"""Webhook events into their tables: signature check, routing through the registry, no lost update.

Ordering rule. Stripe's `event.created` has one-second resolution, so a stored row carries the second
of the state it holds (`_last_synced_at`). For an event of second T and a stored row of time S:

* S < T (or no row): the payload is newer; it is written (batched, event_writer.py);
* S >= T + 1 s: the stored state is newer; the event is `stale` and writes nothing;
* T <= S < T + 1 s: a *tie*, order unknown: the object is fetched from the API under a per-object lock
  (in-process and a PostgreSQL advisory lock) and stored with time max(S, T). The fetch happens after
  the event was delivered, so it holds that event's state or a later one; ties of one second are
  serialised, so the last of them stores the latest state. Nothing but a tie or a later second can
  overwrite it, and fetched writes of an earlier second are refused by the same rule.

Types whose deletion removes the row (tax ids) leave no trace of a deletion, so an event for such an
object with no stored row is fetched too; the entitlement summary does the same when the customer has
no rows. Every event is logged in `stripe._events`, in the transaction that applies it, which is how
duplicates are recognised; ties are logged only once resolved.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import stripe

from .database import UpsertRow, clean_json, parse_json
from .errors import InvalidInput
from .event_writer import TIE, EventWriter, PendingWrite, store_children
from .listing import child_list_call, list_all
from .masking import mask_secret, mask_secrets_in
from .registry import (
    ENTITLEMENT_SUMMARY_EVENT,
    EVENT_TYPES,
    REGISTRY,
    ObjectType,
    UnknownObjectType,
    check_object,
    object_path,
    object_type,
    retrieve_expansions,
)
from .results import WebhookOutcome
from .stripe_api import ObjectNotFound
from .typed_columns import TypedColumns

if TYPE_CHECKING:
    from .context import EngineContext

SIGNATURE_TOLERANCE_SECONDS = 300
PRUNE_INTERVAL_SECONDS = 600.0
SECRET_RELOAD_INTERVAL_SECONDS = 1.0
ONE_SECOND = timedelta(seconds=1)

# Resolved once: the SDK loads these lazily on every attribute access.
_verify_header = stripe.WebhookSignature.verify_header
_SignatureVerificationError = stripe.SignatureVerificationError

RELATED_FIELDS: dict[str, str] = {
    "customer": "customers", "product": "products", "price": "prices", "invoice": "invoices",
    "subscription": "subscriptions", "charge": "charges",
}
"""Reference fields followed by `backfill_related_entities`, and the table each points into."""


DEAD_LETTER = "dead_letter"
"""The outcome of a signed event that cannot be stored (see `_dead_letter`)."""

UNSTORABLE = (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded, RecursionError, UnicodeEncodeError)
"""What a given event raises on every attempt: values PostgreSQL refuses (class 22: NaN, numbers out
of range, `\u0000` in text, a lone surrogate), nesting past a parser's limit, text that cannot be encoded."""

_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")
"""A connected account's id, as an event's `account` must carry it (it becomes a `Stripe-Account` header)."""

CLAIM_SCAN_BYTES = 4096
_CLAIMED_ID = re.compile(rb'"id"\s*:\s*"(evt_[A-Za-z0-9_]{1,64})"')
_CLAIMED_TYPE = re.compile(rb'"type"\s*:\s*"([a-z0-9_.]{1,100})"')


def claimed_identity(body: bytes) -> tuple[str | None, str | None]:
    """The event id and type a body claims, found in its first few kilobytes (Stripe writes them
    first) without parsing it: a huge or deeply nested body costs a bounded scan and cannot raise."""
    head = body[:CLAIM_SCAN_BYTES]
    found_id, found_type = _CLAIMED_ID.search(head), _CLAIMED_TYPE.search(head)
    return (found_id.group(1).decode() if found_id else None,
            found_type.group(1).decode() if found_type else None)


def _printable(value: Any) -> str | None:
    """A value fit for a text column: a string, without NUL, lone surrogates escaped."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:255]


def _dump_any(event: Any) -> bytes:
    try:
        return json.dumps(event, ensure_ascii=True).encode()
    except (RecursionError, ValueError, TypeError):
        return repr(event).encode("utf-8", "backslashreplace")


class WebhookError(InvalidInput, ValueError):
    """A delivery that must be refused with 400: nothing was written."""


class InvalidSignature(WebhookError):
    """The `Stripe-Signature` header is missing, does not match any known secret, or is too old."""


class MalformedEvent(WebhookError):
    """The body is not a Stripe event (not JSON, or missing `id`, `type`, `created` or `data.object`)."""


@dataclass(slots=True)
class _Event:
    """A routed event: what it carries and where it goes."""

    event_id: str
    event_type: str
    account_id: str
    object_type: ObjectType
    obj: dict
    object_id: str
    created: datetime
    deleting: bool
    document: str | None


@dataclass(frozen=True)
class WebhookOptions:
    batch_window: float = 0.0
    """Seconds a batch waits for more events before it is written (0: only what arrived meanwhile)."""
    max_writers: int | None = None
    """Batches written at once; None leaves two pool connections for the careful path."""
    db_timeout: float = 5.0
    """Seconds a delivery waits for a database connection before it fails (and Stripe redelivers)."""


class WebhookProcessor:
    """Applies Stripe events to the database of one engine."""

    def __init__(self, ctx: EngineContext, options: WebhookOptions | None = None) -> None:
        options = options or WebhookOptions()
        self.ctx = ctx
        self.log: logging.Logger = ctx.log
        pool_size = ctx.config.pool_max_size
        writers = options.max_writers or max(1, min(4, pool_size - 2))
        self.writer = EventWriter(ctx.database, window=options.batch_window,
                                  max_writers=writers, db_timeout=options.db_timeout, log=self.log)
        # Each careful write holds a connection while it asks the API: leave the batches theirs.
        self._careful_slots = asyncio.Semaphore(max(1, pool_size - writers - 1))
        self.clock = time.time
        """Seconds since the epoch; the signature tolerance is measured against it."""
        self._managed_secrets: list[str] | None = None
        self._secrets_loaded_at = 0.0
        self._last_secret: str | None = None
        self._pruned_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._revalidated: frozenset[str] | None = None

    @property
    def db_timeout(self) -> float:
        return self.writer.db_timeout

    @db_timeout.setter
    def db_timeout(self, seconds: float) -> None:
        self.writer.db_timeout = seconds

    async def close(self) -> None:
        await self.writer.close()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)

    # -- entry points ------------------------------------------------------------------------------

    async def process_webhook(self, payload: bytes | str, signature: str, *, report: bool = True) -> WebhookOutcome:
        """Verify a delivery's `Stripe-Signature`, then apply its event. Raises `WebhookError` for a 400.

        A signed event PostgreSQL cannot take as it is ends as a dead letter (acknowledged, kept with
        its body and the reason), never as an error every retry repeats."""
        if isinstance(payload, (bytes, bytearray, memoryview)):
            body = bytes(payload)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedEvent("the body is not UTF-8 text") from None
        else:
            text = payload
            body = text.encode("utf-8", "surrogatepass")
        await self.verify(text, signature)
        try:
            event = parse_json(text)
        except RecursionError:
            event_id, event_type = claimed_identity(body)
            return await self._dead_letter(body, event_id, event_type, None, "nested too deeply to parse", report)
        except ValueError as error:
            raise MalformedEvent(f"the body is not JSON: {error}") from None
        return await self._process_or_dead_letter(event, text, body, report)

    async def process_event(self, event: dict, *, report: bool = True) -> WebhookOutcome:
        """Apply one event (already trusted: no signature check). Returns its outcome."""
        return await self._process_or_dead_letter(event, None, None, report)

    async def _process_or_dead_letter(self, event: Any, document: str | None, body: bytes | None,
                                      report: bool) -> WebhookOutcome:
        try:
            return await self._process(event, document, report)
        except UNSTORABLE as error:
            event_id, event_type = (event.get("id"), event.get("type")) if isinstance(event, dict) else (None, None)
            account = event.get("account") if isinstance(event, dict) else None
            if not isinstance(account, str):  # the key's own account: its data is deleted with it
                try:
                    account = await self.ctx.account.own_id()
                except Exception:  # noqa: BLE001 - the record matters more than its account
                    account = None
            if body is None:
                body = _dump_any(event)
            reason = mask_secrets_in(f"{type(error).__name__}: {' '.join(str(error).split())}")[:500]
            return await self._dead_letter(body, event_id, event_type, account, reason, report)

    async def _dead_letter(self, body: bytes, event_id: Any, event_type: Any, account: Any, reason: str,
                           report: bool) -> WebhookOutcome:
        """Keep an event that cannot be stored: acknowledged, its body byte for byte, the reason."""
        event_id, event_type, account = (_printable(v) for v in (event_id, event_type, account))
        async with self.writer.connection() as conn:
            await conn.execute(
                "INSERT INTO stripe._dead_letters (event_id, event_type, account_id, reason, body) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) WHERE event_id IS NOT NULL "
                "DO UPDATE SET deliveries = stripe._dead_letters.deliveries + 1, reason = EXCLUDED.reason",
                (event_id, event_type, account, reason, body))
        self.log.warning("dead letter %s %s: %s", event_type or "-", event_id or "-", reason)
        if report:
            self._report(event_id or "-", event_type or "-", DEAD_LETTER, None)
        return WebhookOutcome(event_id or "-", event_type or "-", account, None, None, DEAD_LETTER, reason)

    # -- signatures --------------------------------------------------------------------------------

    async def verify(self, payload: str, signature: str) -> None:
        """Check the signature against the configured secret and every managed webhook's secret."""
        if not signature:
            raise InvalidSignature("no Stripe-Signature header")
        if not self._matches(payload, signature, self._known_secrets()):
            stale = time.monotonic() - self._secrets_loaded_at > SECRET_RELOAD_INTERVAL_SECONDS
            if self._managed_secrets is None or stale:  # a webhook created since, maybe elsewhere
                await self.reload_secrets()
            if not self._matches(payload, signature, self._known_secrets()):
                if not self._known_secrets():
                    raise InvalidSignature("no webhook secret is configured (set STRIPE_WEBHOOK_SECRET or "
                                           "create a managed webhook)")
                raise InvalidSignature("the signature matches no known webhook secret")
        self._check_age(signature)

    async def reload_secrets(self) -> None:
        """Read the managed webhooks' secrets again (after one was created elsewhere)."""
        async with self.writer.connection() as conn:
            cursor = await conn.execute("SELECT secret FROM stripe._managed_webhooks")
            self._managed_secrets = [row[0] for row in await cursor.fetchall()]
        self._secrets_loaded_at = time.monotonic()

    def forget_secrets(self) -> None:
        self._managed_secrets = None

    def _known_secrets(self) -> list[str]:
        secrets = [self.ctx.config.stripe_webhook_secret, *(self._managed_secrets or ())]
        return [s for s in dict.fromkeys(secrets) if s]

    def _matches(self, payload: str, signature: str, secrets: list[str]) -> bool:
        if self._last_secret in secrets:  # the usual one first: one HMAC per delivery
            secrets = [self._last_secret, *(s for s in secrets if s != self._last_secret)]
        for secret in secrets:
            try:
                _verify_header(payload, signature, secret, tolerance=None)
            except _SignatureVerificationError:
                continue
            self._last_secret = secret
            return True
        return False

    def _check_age(self, signature: str) -> None:
        stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
        try:
            signed_at = int(stamps[0])
        except (IndexError, ValueError):
            raise InvalidSignature("the Stripe-Signature header has no timestamp") from None
        age = self.clock() - signed_at
        if age > SIGNATURE_TOLERANCE_SECONDS:
            raise InvalidSignature(f"the signature is {int(age)} s old, over the {SIGNATURE_TOLERANCE_SECONDS} s "
                                   "tolerance (a replayed delivery?)")

    # -- routing -----------------------------------------------------------------------------------

    async def _process(self, event: Any, document: str | None, report: bool) -> WebhookOutcome:
        event_id, event_type, obj, created = _validated(event)
        connected = event.get("account")
        if connected is not None and not (isinstance(connected, str) and _ACCOUNT_ID.fullmatch(connected)):
            raise MalformedEvent(f"event {event_id} names no account id in 'account'")
        account = connected or await self.ctx.account.own_id()
        entry = EVENT_TYPES.get(event_type)
        object_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        table = entry.table if entry else None
        if event_type == ENTITLEMENT_SUMMARY_EVENT:
            object_id = _ref(obj.get("customer"))
            outcome, detail = await self._apply_entitlement_summary(event_id, event_type, account, obj, created)
        elif entry is None:
            outcome, detail = await self._log_only(event_id, event_type, account, object_id, created,
                                                   "ignored", "unsupported event type")
        elif obj.get("object") not in (None, entry.stripe_object):
            outcome, detail = await self._log_only(
                event_id, event_type, account, object_id, created, "ignored",
                f"carries a {obj.get('object')!r}, not a {entry.stripe_object!r}")
        elif not object_id:
            outcome, detail = await self._log_only(event_id, event_type, account, None, created, "ignored",
                                                   "the object has no id (an upcoming invoice preview)")
        else:
            routed = _Event(event_id, event_type, account, entry, obj, object_id, created,
                            event_type in entry.deleted_event_types, document)
            outcome, detail = await self._apply(routed)
        if outcome == "ignored":
            self.log.info("ignored %s %s: %s", event_type, event_id, detail)
        if report:
            self._report(event_id, event_type, outcome, None)
        self._maybe_prune()
        return WebhookOutcome(event_id, event_type, account, table, object_id, outcome, detail)

    def _report(self, event_id: str, event_type: str, outcome: str, status: int | None) -> None:
        try:
            self.ctx.progress.event_received(event_id, event_type, outcome, status)
        except Exception:  # a sink must never break event processing
            self.log.exception("progress sink failed on event_received")

    def revalidates(self, entry: ObjectType) -> bool:
        if self._revalidated is None:
            tables = set()
            for name in self.ctx.config.revalidate_objects_via_stripe_api:
                try:
                    tables.add(object_type(name).table)
                except UnknownObjectType:
                    self.log.warning("revalidate_objects_via_stripe_api: unknown object type %r", name)
            self._revalidated = frozenset(tables)
        return entry.table in self._revalidated

    async def _apply(self, event: _Event) -> tuple[str, str | None]:
        entry = event.object_type
        if self.ctx.config.backfill_related_entities and not event.deleting:
            await self._backfill_related(event.obj, event.account_id, event.created)
        # An event's object never carries the includable fields: fetch the whole object instead.
        revalidate = (not event.deleting and (self.revalidates(entry) or bool(entry.includable))
                      and not entry.is_final(event.obj))
        if revalidate or entry.deletion == "remove":
            return await self._apply_carefully(event, revalidate=revalidate)
        obj = event.obj
        if not event.deleting:
            obj = await self._complete_lists(entry, obj, event.account_id)
        if obj is not event.obj or event.document is None:
            event.obj, document = obj, json.dumps({"data": {"object": obj}}, separators=(",", ":"),
                                                  ensure_ascii=False)
        else:
            document = event.document
        outcome = await self.writer.write(PendingWrite(
            event.event_id, event.event_type, event.account_id, entry, event.object_id, event.created,
            clean_json(document), obj, event.deleting))
        if outcome == TIE:
            return await self._apply_carefully(event, revalidate=False)
        return outcome, None

    # -- the careful path: ties, revalidation, objects whose deletion leaves no row --------------------

    async def _apply_carefully(self, event: _Event, *, revalidate: bool) -> tuple[str, str | None]:
        entry = event.object_type
        async with self._careful_slots, self.writer.exclusive((entry.table, event.object_id)):
            for _ in range(3):
                settled = await self._settle(event, revalidate)
                if settled is not None:
                    return settled
        raise RuntimeError(f"could not settle {event.event_type} {event.event_id}: the row kept changing")

    async def _settle(self, event: _Event, revalidate: bool) -> tuple[str, str | None] | None:
        """Decide and write under the object's advisory lock; None when a concurrent write won the race."""
        entry, account, created = event.object_type, event.account_id, event.created
        async with self.writer.connection() as conn, conn.transaction():
            await _advisory_lock(conn, f"{entry.table}:{event.object_id}")
            if await _logged(conn, event.event_id):
                return "duplicate", None
            newest = await _stored_at(conn, entry, event.object_id)
            if newest is not None and newest >= created + ONE_SECOND:
                return await _log(conn, event, "stale", "a later state is stored")
            tie = newest is not None and newest >= created
            uncertain = newest is None and entry.deletion == "remove" and not event.deleting
            fetch = tie or uncertain or revalidate
            deleting, obj = event.deleting, event.obj
            if fetch:
                current = await self._fetch(entry, event.object_id, account)
                deleting = current is None or current.get("deleted") is True
                obj = current or {"id": event.object_id, "object": entry.stripe_object}
                detail = ("same-second tie: stored the object fetched from the API" if tie else
                          "revalidated via the API" if revalidate else "no stored row: fetched from the API")
                outcome = "deleted" if deleting else "refetched"
                limit = created + ONE_SECOND  # the fetched state is at least as new as second T
            else:
                detail, outcome, limit = None, ("deleted" if deleting else "stored"), created
            if not deleting:
                obj = await self._complete_lists(entry, obj, account)
            new_accounts = await self.writer.ensure_accounts(conn, {account})
            written_at = await _write_one(conn, entry, obj, account, created, limit, deleting,
                                          await self.ctx.database.typed_columns(conn))
            nothing_to_remove = deleting and entry.deletion == "remove" and newest is None
            if written_at is None and not nothing_to_remove:
                if not fetch:
                    return None  # a concurrent writer stored this second first: decide again
                return await _log(conn, event, "stale", "a later state was stored meanwhile")
            if written_at is not None and not deleting:
                await store_children(self.ctx.store, entry, [obj], account, written_at, conn, fetched=fetch)
            result = await _log(conn, event, outcome, detail)
        self.writer.remember_accounts(new_accounts)
        return result

    async def _fetch(self, entry: ObjectType, object_id: str, account: str) -> dict | None:
        """The object as Stripe has it now; None when it no longer exists."""
        if entry.retrieve_path is None:
            raise RuntimeError(f"{entry.table} cannot be retrieved one by one")
        try:
            expand = retrieve_expansions(entry)
            fetched = await self.ctx.stripe.get(object_path(entry.retrieve_path, id=object_id),
                                                {"expand": expand} if expand else None,
                                                account=self.ctx.account.header(account))
        except ObjectNotFound:
            return None
        return check_object(entry, fetched, object_id)

    async def _list_all(self, path: str, params: dict, account: str) -> list[dict]:
        return await list_all(self.ctx.stripe, path, params, account=self.ctx.account.header(account))

    async def _complete_lists(self, entry: ObjectType, obj: dict, account: str) -> dict:
        """Complete truncated embedded lists (`auto_expand_lists`) and list children that only come with
        their parent (checkout line items, which a session's payload never embeds)."""
        for nested in entry.nested_lists:
            embedded = obj.get(nested.field)
            child = REGISTRY.get(nested.child_table or "")
            missing = embedded is None and child is not None and not child.event_types
            truncated = (isinstance(embedded, dict) and bool(embedded.get("has_more"))
                         and self.ctx.config.auto_expand_lists)
            if not (missing or truncated):
                continue
            path, params = child_list_call(child, object_path(nested.path, id=obj["id"]))
            try:
                items = await self._list_all(path, params, account)
            except ObjectNotFound:  # the parent is gone (or unknown to this account): keep what came
                continue
            base = embedded if isinstance(embedded, dict) else {"object": "list", "url": path}
            obj = {**obj, nested.field: {**base, "data": items, "has_more": False}}
        return obj

    # -- entitlements ------------------------------------------------------------------------------

    async def _apply_entitlement_summary(self, event_id: str, event_type: str, account: str, obj: dict,
                                         created: datetime) -> tuple[str, str | None]:
        """The summary is the customer's whole set of active entitlements: replace what is stored."""
        customer = _ref(obj.get("customer"))
        if not customer:
            return await self._log_only(event_id, event_type, account, None, created, "ignored",
                                        "the summary names no customer")
        entry = REGISTRY["active_entitlements"]
        listed: dict = obj["entitlements"] if isinstance(obj.get("entitlements"), dict) else {}
        items = [i for i in listed.get("data") or [] if isinstance(i, dict) and i.get("id")]
        event = _Event(event_id, event_type, account, entry, obj, customer, created, False, None)
        async with self._careful_slots, self.writer.exclusive((entry.table, customer)):
            async with self.writer.connection() as conn, conn.transaction():
                await _advisory_lock(conn, f"{entry.table}:{customer}")
                if await _logged(conn, event_id):
                    return "duplicate", None
                cursor = await conn.execute(
                    "SELECT max(_last_synced_at) FROM stripe.active_entitlements WHERE customer = %s", (customer,))
                newest = (await cursor.fetchone() or (None,))[0]
                if newest is not None and newest >= created + ONE_SECOND:
                    return await _log(conn, event, "stale", "a later summary is stored")
                # Without rows we cannot tell an older summary from a newer empty one: ask Stripe.
                fetch = (newest is not None and newest >= created) or bool(listed.get("has_more")) or (
                    newest is None and bool(items))
                synced_at = max(newest, created) if newest is not None else created
                if fetch:
                    try:
                        items = await self._list_all("/v1/entitlements/active_entitlements",
                                                     {"customer": customer}, account)
                    except ObjectNotFound:  # the customer is gone: so are its entitlements
                        items = []
                new_accounts = await self.writer.ensure_accounts(conn, {account})
                await self.ctx.database.upsert(
                    entry, [UpsertRow(i, account, synced_at, customer) for i in items], conn=conn)
                await conn.execute(
                    "DELETE FROM stripe.active_entitlements WHERE customer = %s AND NOT (id = ANY(%s))",
                    (customer, [i["id"] for i in items]))
                result = await _log(conn, event, "refetched" if fetch else "stored",
                                    f"{len(items)} active entitlement(s)")
            self.writer.remember_accounts(new_accounts)
            return result

    # -- related objects ---------------------------------------------------------------------------

    async def _backfill_related(self, obj: dict, account: str, created: datetime, depth: int = 0) -> None:
        """Fetch and store referenced customers, products, prices, invoices, subscriptions and charges
        that are not stored yet (one level deep, plus what those reference)."""
        wanted: dict[str, set[str]] = {}
        for field, table in RELATED_FIELDS.items():
            ref = _ref(obj.get(field))
            if ref and ref != obj.get("id"):
                wanted.setdefault(table, set()).add(ref)
        for table, ids in wanted.items():
            rows = await self.ctx.database.fetch_all(
                f"SELECT id FROM stripe.{table} WHERE id = ANY(%s)", (sorted(ids),))
            for missing in sorted(ids - {row["id"] for row in rows}):
                fetched = await self._fetch(REGISTRY[table], missing, account)
                if fetched is None:
                    continue
                if depth < 1:
                    await self._backfill_related(fetched, account, created, depth + 1)
                # Stored as of the event's second: the fetch came after the event, so it is no older.
                await self.ctx.store.store(REGISTRY[table], [fetched], account, created)

    # -- the event log -----------------------------------------------------------------------------

    async def _log_only(self, event_id: str, event_type: str, account: str, object_id: str | None,
                        created: datetime, outcome: str, detail: str | None) -> tuple[str, str | None]:
        """Log an event that writes nothing else (an ignored type); a repeat is a duplicate."""
        async with self.writer.connection() as conn:
            logged = await _insert_event_log(conn, event_id, event_type, account, object_id, created, outcome, detail)
        return (outcome, detail) if logged else ("duplicate", None)

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL_SECONDS:
            return
        self._pruned_at = now
        task = asyncio.create_task(self._prune_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prune_quietly(self) -> None:
        try:
            removed = await self.prune_event_log()
        except Exception as error:
            self.log.warning("could not prune the event log: %s", error)
            return
        if removed:
            self.log.info("pruned %d event log rows older than %d days", removed,
                          self.ctx.config.event_log_retention_days)

    async def prune_event_log(self, chunk: int = 5000) -> int:
        """Delete event log rows received more than `event_log_retention_days` ago, in small chunks."""
        days = self.ctx.config.event_log_retention_days
        total = 0
        while True:
            removed = await self.ctx.database.execute(
                "DELETE FROM stripe._events WHERE ctid = ANY(ARRAY("
                "SELECT ctid FROM stripe._events WHERE received_at < now() - make_interval(days => %s) LIMIT %s))",
                (days, chunk))
            total += removed
            if removed < chunk:
                return total

    async def recent_events(self, limit: int = 100) -> list[dict]:
        """The newest entries of the event log, newest first (for the console's feed)."""
        return await self.ctx.database.fetch_all(
            "SELECT id, type, account_id, object_id, event_created, received_at, outcome, detail "
            "FROM stripe._events ORDER BY received_at DESC, id DESC LIMIT %s", (limit,))

    def __repr__(self) -> str:
        secret = mask_secret(self.ctx.config.stripe_webhook_secret)
        return f"WebhookProcessor(secret={secret}, managed_secrets={len(self._managed_secrets or ())})"


# -- helpers -----------------------------------------------------------------------------------------


def _validated(event: Any) -> tuple[str, str, dict, datetime]:
    if not isinstance(event, dict):
        raise MalformedEvent("the body is not a JSON object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    data = event.get("data")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("the event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent(f"event {event_id} has no type")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent(f"event {event_id} has no data.object")
    if isinstance(created, bool) or not isinstance(created, int):
        raise MalformedEvent(f"event {event_id} has no created timestamp")
    try:
        when = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvent(f"event {event_id} has an impossible created timestamp") from None
    return event_id, event_type, data["object"], when


def _ref(value: Any) -> str | None:
    """The id in a reference field, whether Stripe sent the id or the expanded object."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


async def _advisory_lock(conn: psycopg.AsyncConnection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"stripe-sync:{name}",))


async def _logged(conn: psycopg.AsyncConnection, event_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM stripe._events WHERE id = %s", (event_id,))
    return await cursor.fetchone() is not None


async def _stored_at(conn: psycopg.AsyncConnection, entry: ObjectType, object_id: str) -> datetime | None:
    cursor = await conn.execute(
        f"SELECT _last_synced_at FROM stripe.{entry.table} WHERE id = %s FOR UPDATE", (object_id,))
    row = await cursor.fetchone()
    if row is None:
        return None
    return row[0] or datetime.fromtimestamp(0, UTC)


async def _log(conn: psycopg.AsyncConnection, event: _Event, outcome: str,
               detail: str | None) -> tuple[str, str | None]:
    """Log an event settled under its object's lock (which already ruled out a duplicate)."""
    await _insert_event_log(conn, event.event_id, event.event_type, event.account_id, event.object_id,
                            event.created, outcome, detail)
    return outcome, detail


async def _insert_event_log(conn: psycopg.AsyncConnection, event_id: str, event_type: str, account: str,
                            object_id: str | None, created: datetime, outcome: str, detail: str | None) -> bool:
    """One row of `stripe._events`; False when the event was logged already."""
    cursor = await conn.execute(
        "INSERT INTO stripe._events (id, type, account_id, object_id, event_created, outcome, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
        (event_id, event_type, account, object_id, created, outcome, detail))
    return await cursor.fetchone() is not None


async def _write_one(conn: psycopg.AsyncConnection, entry: ObjectType, obj: dict, account: str,
                     created: datetime, limit: datetime, deleting: bool, typed: TypedColumns) -> datetime | None:
    """Write one object over a row older than `limit`, keeping the later of the two times.

    Returns the row's time after the write; None when nothing was written (or nothing was there to
    remove).
    """
    table = f"stripe.{entry.table}"
    guard = "WHERE t._last_synced_at IS NULL OR t._last_synced_at < %(limit)s"
    params: dict[str, Any] = {"id": obj["id"], "account": account, "ts": created, "limit": limit}
    if deleting and entry.deletion == "remove":
        cursor = await conn.execute(
            f"DELETE FROM {table} AS t WHERE t.id = %(id)s AND "
            "(t._last_synced_at IS NULL OR t._last_synced_at < %(limit)s) RETURNING t._last_synced_at", params)
        return None if await cursor.fetchone() is None else created
    parent, name = entry.parent_column, entry.table
    columns = "_raw_data, _account_id, _last_synced_at" + (f', "{parent}"' if parent else "") + typed.names(name)
    values = "j, %(account)s, %(ts)s" + (", %(parent)s" if parent else "") + typed.values(name, "j")
    if deleting:
        params["raw"] = json.dumps({**obj, "deleted": True}, ensure_ascii=False)
        update = "_raw_data = t._raw_data || EXCLUDED._raw_data" + typed.assignments(
            name, "t._raw_data || EXCLUDED._raw_data")
    else:
        params["raw"] = json.dumps(obj, ensure_ascii=False)
        update = "_raw_data = EXCLUDED._raw_data, _account_id = EXCLUDED._account_id" + typed.excluded(name)
    if parent:
        params["parent"] = _ref(obj.get(parent))
        update += f', "{parent}" = COALESCE(EXCLUDED."{parent}", t."{parent}")'
    params["raw"] = clean_json(params["raw"])
    cursor = await conn.execute(
        f"INSERT INTO {table} AS t ({columns}) SELECT {values} FROM (SELECT %(raw)s::jsonb AS j) AS v "
        f"ON CONFLICT (id) DO UPDATE SET {update}, "
        f"_last_synced_at = GREATEST(t._last_synced_at, EXCLUDED._last_synced_at) {guard} "
        "RETURNING t._last_synced_at", params)
    row = await cursor.fetchone()
    return None if row is None else row[0]
