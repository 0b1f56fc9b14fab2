"""Headless output: data on stdout (JSON lines with --json, text otherwise), logs and progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO

from stripe_sync_core.masking import mask_secrets_in
from stripe_sync_core.progress import ProgressSink

if TYPE_CHECKING:
    from stripe_sync_core.stripe_api import ApiStats


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class Output:
    """Where a command writes what it finds. In JSON mode stdout carries data only."""

    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def data(self, record: dict[str, Any], text: str | None = None) -> None:
        """One result: a JSON line, or `text` (default: key=value pairs) for people."""
        if self.json_mode:
            self.stdout.write(json.dumps(record, default=_default, sort_keys=True) + "\n")
        else:
            line = text if text is not None else "  ".join(f"{k}={_plain(v)}" for k, v in record.items())
            self.stdout.write(mask_secrets_in(line) + "\n")
        self.stdout.flush()

    def table(self, rows: list[dict[str, Any]], columns: list[str], kind: str) -> None:
        """Rows as JSON lines (each with `kind`), or as an aligned text table."""
        if self.json_mode:
            for row in rows:
                self.data({"kind": kind, **row})
            return
        widths = {c: max([len(c)] + [len(_plain(r.get(c))) for r in rows]) for c in columns}
        self.stdout.write("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip() + "\n")
        for row in rows:
            line = "  ".join(_plain(row.get(c)).ljust(widths[c]) for c in columns).rstrip()
            self.stdout.write(mask_secrets_in(line) + "\n")
        self.stdout.flush()

    def log(self, text: str) -> None:
        self.stderr.write(mask_secrets_in(text) + "\n")
        self.stderr.flush()


def _shown(object_name: str) -> str:
    """An object as people read it: an incremental run's internal `_events` chunk is the events since
    the previous run (its result says `events`)."""
    return "events since the previous run" if object_name == "_events" else object_name


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    return str(value)


class HeadlessProgress(ProgressSink):
    """Backfill progress: a redrawn bar on a terminal, plain lines when piped, JSON lines with --json."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.interactive = output.stderr.isatty() and not output.json_mode
        self.stored: dict[str, int] = {}
        self.chunks_total = 0
        self.chunks_done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self.api_stats: ApiStats | None = None
        """The Stripe client's counters, once the engine is open: 429s and retries for the JSON stream."""

    def run_started(self, run_id: int, objects: list[str], chunks: int) -> None:
        self.chunks_total = chunks
        self.started = time.monotonic()
        if self.output.json_mode:
            self.output.data({"kind": "run_started", "run_id": run_id, "objects": objects, "chunks": chunks})
        else:
            self.output.log(f"run {run_id}: {len(objects)} object type(s), {chunks} chunk(s) planned")

    def chunk_started(self, run_id: int, object_name: str, chunk_id: int, created_gte: int | None,
                      created_lte: int | None) -> None:
        if self.output.json_mode:
            self.output.data({"kind": "chunk_started", "run_id": run_id, "object": object_name,
                              "chunk_id": chunk_id, "created_gte": created_gte, "created_lte": created_lte})

    def objects_stored(self, run_id: int, object_name: str, chunk_id: int, count: int) -> None:
        self.stored[object_name] = self.stored.get(object_name, 0) + count
        if self.output.json_mode:
            self.output.data({"kind": "objects_stored", "run_id": run_id, "object": object_name,
                              "chunk_id": chunk_id, "count": count})
        self._draw()

    def objects_estimated(self, run_id: int, object_name: str, estimated_total: int) -> None:
        if self.output.json_mode:
            self.output.data({"kind": "objects_estimated", "run_id": run_id, "object": object_name,
                              "estimated_total": estimated_total})

    def request_rate(self, requests_per_second: float) -> None:
        if self.output.json_mode:
            record: dict[str, Any] = {"kind": "request_rate", "requests_per_second": requests_per_second}
            if self.api_stats is not None:  # this process's totals so far
                record.update(requests=self.api_stats.requests, rate_limited=self.api_stats.rate_limited,
                              retries=self.api_stats.retries, server_errors=self.api_stats.server_errors)
            self.output.data(record)

    def chunk_done(self, run_id: int, object_name: str, chunk_id: int, status: str, processed: int,
                   error: str | None = None) -> None:
        self.chunks_done += 1
        if self.output.json_mode:
            self.output.data({"kind": "chunk_done", "run_id": run_id, "object": object_name, "chunk_id": chunk_id,
                              "status": status, "processed": processed, "error": error})
        elif status == "error":
            self._clear()
            self.output.log(f"chunk {chunk_id} of {_shown(object_name)} failed: {error}")
        elif not self.interactive:
            self.output.log(f"{_shown(object_name)}: chunk {chunk_id} {status}, {processed} object(s) "
                            f"[{self.chunks_done}/{self.chunks_total}]")
        self._draw(force=True)

    def message(self, level: str, text: str) -> None:
        self._clear()
        if self.output.json_mode:
            self.output.data({"kind": "message", "level": level, "text": text})
        else:
            self.output.log(f"{level}: {text}")

    def _clear(self) -> None:
        if self.interactive:
            self.output.stderr.write("\r\033[K")

    def _draw(self, force: bool = False) -> None:
        if not self.interactive:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        total = sum(self.stored.values())
        rate = total / max(now - self.started, 1e-6)
        width = 30
        filled = int(width * self.chunks_done / self.chunks_total) if self.chunks_total else 0
        bar = "#" * filled + "-" * (width - filled)
        self.output.stderr.write(f"\r\033[K[{bar}] {self.chunks_done}/{self.chunks_total} chunks  "
                                 f"{total:,} objects  {rate:,.0f}/s")
        self.output.stderr.flush()

    def finish(self) -> None:
        if self.interactive:
            self._draw(force=True)
            self.output.stderr.write("\n")
