"""What the engine's public calls return: small frozen dataclasses, so a caller (the console, the CLI, a
host application) reads named, typed fields and mypy catches a renamed one. `to_dict()` gives the JSON
shape the CLI prints with `--json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

WebhookOutcomeKind = Literal["stored", "deleted", "stale", "duplicate", "ignored"]
SingleSyncOutcome = Literal["stored", "unchanged", "deleted"]
ObjectRunStatus = Literal["running", "interrupted", "error", "complete"]


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What one event did: `stored`, `deleted`, `stale` (older than the stored row), `duplicate` (seen
    before) or `ignored` (an unsupported type, an object without id ...; `detail` says why)."""

    event_id: str
    type: str
    account: str
    table: str | None
    object_id: str | None
    outcome: str
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ObjectBackfillResult:
    """One object type's share of a backfill run."""

    stored: int
    errors: int
    error_messages: list[str]
    duration: float
    chunks: int
    status: str
    estimated_total: int
    run_id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# `process_until_done` / `join_open_run`: table name -> its result, in the registry's order.
BackfillResult = dict[str, ObjectBackfillResult]


@dataclass(frozen=True, slots=True)
class BackfillStep:
    """What one `process_next` call did: the chunk it worked on (none when nothing was left to claim)."""

    run_id: int
    done: bool
    object: str | None = None
    chunk_id: int | None = None
    stored: int = 0
    status: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SingleSyncResult:
    """`sync_single_entity`: the object, its table, and whether it was stored, unchanged or deleted."""

    id: str
    object: str
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class OpenRun:
    """`open_runs` / `abandon_open_runs`: a run not closed yet, how far it got, and who works on it now.

    A run is *held* while a live worker (one whose advisory lock and heartbeat say it is alive) has a
    chunk of it; otherwise it is *interrupted*: nobody works on it and it waits for a resume.
    """

    run_id: int
    account_id: str
    trigger: str
    objects: tuple[str, ...]
    started_at: datetime
    chunks_done: int
    chunks_left: int
    """Pending or running: what a resume would still fetch."""
    chunks_failed: int
    workers: tuple[str, ...]
    """The live workers holding a chunk now (`host:pid:key`); empty when the run is interrupted."""

    @property
    def held(self) -> bool:
        return bool(self.workers)

    @property
    def state(self) -> Literal["running", "interrupted"]:
        return "running" if self.workers else "interrupted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


@dataclass(frozen=True, slots=True)
class ManagedWebhookRef:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class DeletionReport:
    """`dangerously_delete_synced_account_data`: what was (or, in a dry run, would be) deleted."""

    account_id: str
    dry_run: bool
    deleted_record_counts: dict[str, int]
    managed_webhooks: list[ManagedWebhookRef]
    sync_runs: int
    webhooks_removed_from_stripe: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.deleted_record_counts.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VerifyKind = Literal["missing", "deleted", "changed", "stale"]


@dataclass(frozen=True, slots=True)
class VerifyDifference:
    """One row that disagrees with Stripe: `missing` (Stripe has it, the database not), `deleted` (Stripe
    no longer returns it), `changed` (the stored object differs; `fields` says where) or `stale` (differs
    only in fields Stripe changes without an event, the registry's `silent_fields`)."""

    id: str
    kind: str
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "fields": list(self.fields)}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """`verify` of one object type: how many objects were compared and how many disagree, by kind;
    `differences` holds the first few (the counts are complete)."""

    object: str
    account_id: str
    checked: int
    stripe_objects: int
    stored_rows: int
    missing: int
    deleted: int
    changed: int
    stale: int
    repaired: int
    repair: bool
    sample: int | None
    since: int | None
    checked_at: datetime
    differences: tuple[VerifyDifference, ...] = ()

    @property
    def drift(self) -> int:
        return self.missing + self.deleted + self.changed + self.stale

    @property
    def clean(self) -> bool:
        return self.drift == 0

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "differences"}
        out["checked_at"] = self.checked_at.isoformat()
        out["drift"] = self.drift
        out["differences"] = [d.to_dict() for d in self.differences]
        return out
