"""A backfill the console starts runs in a worker process: `stripe-sync-tui --headless --json backfill`.

The console does no bulk work: a backfill in its process (one GIL) makes key presses wait. It starts the
command an operator would run, with the console's exact settings in the environment
(`SyncConfig.child_environment`: secrets never in arguments or files), and follows it by the JSON lines
the command prints: each record becomes the progress-sink call the engine makes in process, so the
screens get the same messages (`RunStarted`, `ChunkStarted`, `ChunkCompleted`, `RunFinished`). The
screens' refresh reads show the rest from the database.

The worker writes its stream and its log to files, not pipes: a busy console never makes the worker
wait on a full pipe, and a worker the operator detaches keeps running (and writing) once the console has
exited. It runs in a session of its own, so a terminal's Ctrl-C or hang-up reaches only the console; the
console stops it with SIGINT, the CLI's Ctrl-C, and its chunks go back to pending with their cursors.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.config import SyncConfig
from stripe_sync_core.errors import ErrorKind, Refused, StripeSyncError
from stripe_sync_core.masking import mask_secrets_in
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.results import BackfillResult, ObjectBackfillResult

from .headless import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from .worker_priority import BACKFILL_NICENESS, run_below_console

CLI_MODULE = "stripe_sync_tui.cli"
POLL_SECONDS = 0.1
"""How often the console looks at the worker's stream (a read of what the file gained)."""
STOP_WAIT_SECONDS = 30.0
"""How long a cancelled follower waits for the worker to give its chunks back before leaving it."""
LEASE_SECONDS = BackfillOptions().lease_seconds


def _moment(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


@dataclass(frozen=True)
class BackfillCommand:
    """What a worker is asked to do: a run of `objects` (None: join the account's open run)."""

    objects: tuple[str, ...] | None
    created_gte: int | None = None
    created_lte: int | None = None
    chunk: str | int | None = None
    concurrency: int | None = None

    def arguments(self) -> list[str]:
        """The headless command line (settings travel in the environment)."""
        arguments = ["--headless", "--json", "backfill"]
        if self.objects is None:
            arguments += ["all", "--join"]  # `--join` works the open run, whatever its objects
        else:
            arguments.append("all" if "all" in self.objects else ",".join(self.objects))
        if self.created_gte is not None:
            arguments += ["--since", _moment(self.created_gte)]
        if self.created_lte is not None:
            arguments += ["--until", _moment(self.created_lte)]
        if self.chunk is not None:
            arguments += ["--chunk", str(self.chunk)]
        if self.concurrency is not None:
            arguments += ["--concurrency", str(self.concurrency)]
        return arguments


@dataclass(frozen=True)
class RequestStats:
    """A worker's Stripe requests: the rate of the last second, and its totals since it started."""

    requests_per_second: float
    requests: int = 0
    rate_limited: int = 0
    """Answers 429 (too many requests)."""
    retries: int = 0


# -- how a worker ended without finishing (each says what the operator can do) ----------------------


class WorkerEnded(StripeSyncError):
    """The backfill worker ended before its run was done."""

    def __init__(self, message: str, *, pid: int, run_id: int | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.run_id = run_id


class WorkerStopped(WorkerEnded, Refused):
    """Stopped as on Ctrl-C (by the console or anyone else): its chunks are pending again, resumable."""

    def __init__(self, message: str, *, pid: int, run_id: int | None, requested: bool) -> None:
        super().__init__(message, pid=pid, run_id=run_id)
        self.requested = requested
        """The console asked it to stop (`c`, or quitting); False: a signal from elsewhere."""


class WorkerKilled(WorkerEnded):
    """Killed by a signal it could not handle (kill -9): the chunks it held still read 'running'."""

    def __init__(self, message: str, *, pid: int, run_id: int | None, held_chunks: int) -> None:
        super().__init__(message, pid=pid, run_id=run_id)
        self.held_chunks = held_chunks


class WorkerFailed(WorkerEnded):
    """The command failed (its last error line says why); exit code 2 means it was refused."""

    def __init__(self, message: str, *, pid: int, run_id: int | None, exit_code: int) -> None:
        super().__init__(message, pid=pid, run_id=run_id)
        self.exit_code = exit_code

    @property
    def kind(self) -> ErrorKind:
        return "refused" if self.exit_code == EXIT_USAGE else "failed"


class BackfillProcess:
    """One worker process: start it, replay its stream into a progress sink, stop or detach it."""

    def __init__(self, command: BackfillCommand, config: SyncConfig) -> None:
        self.command = command
        self.config = config
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.run_id: int | None = None
        self.stats: RequestStats | None = None
        self.results: BackfillResult = {}
        self.held_chunks: set[int] = set()
        """Chunks the worker started and has not reported done: what a kill leaves 'running'."""
        self.stop_requested = False
        self.detached = False
        self._stream: BinaryIO | None = None
        self._partial = b""

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def progress_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "progress.jsonl"

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "worker.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="stripe-sync-backfill-"))
        with open(self.progress_path, "wb") as stdout, open(self.log_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", CLI_MODULE, *self.command.arguments()],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=self.config.child_environment(),
                start_new_session=True)
        run_below_console(self.process.pid, BACKFILL_NICENESS)
        self._stream = open(self.progress_path, "rb")  # noqa: SIM115 - read as it grows, closed at the end

    def stop(self) -> bool:
        """Ask the worker to stop as on Ctrl-C (chunks released with their cursors); False once it has ended.

        Asked once only: a second SIGINT would interrupt the worker's clean-up (asyncio's runner raises
        KeyboardInterrupt at once on the second one), leaving its chunks 'running'."""
        if self.process is None or not self.running:
            return False
        if not self.stop_requested:
            self.stop_requested = True
            self.process.send_signal(signal.SIGINT)
        return True

    def detach(self) -> None:
        """Leave the worker running when the console stops following it (the console is quitting)."""
        self.detached = True

    async def wait(self, timeout: float | None = None) -> bool:
        """Until the worker has ended (True) or `timeout` seconds have passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.running:
            if deadline is not None and loop.time() > deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    async def follow(self, sink: ProgressSink) -> BackfillResult:
        """Replay the worker's stream into `sink` until it exits; its summary, or the `WorkerEnded` it
        ended with. Cancelled (the console closing), it stops the worker first, unless detached."""
        try:
            while self.running:
                self.read(sink)
                await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:
            if self.detached:
                self._close_stream()
            else:
                self.stop()
                if await self.wait(STOP_WAIT_SECONDS):
                    self.read(sink)
                    self._clean_up()
            raise
        self.read(sink)
        return self._outcome(sink)

    def read(self, sink: ProgressSink) -> None:
        """Replay the complete lines the stream gained since the last read."""
        if self._stream is None:
            return
        data = self._stream.read()
        if not data:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                try:
                    self.replay(record, sink)
                except (KeyError, TypeError, ValueError):  # a record of another version: skip it
                    continue

    def replay(self, record: dict[str, Any], sink: ProgressSink) -> None:
        """One record of `--json backfill` as the progress-sink call that printed it."""
        kind = record.get("kind")
        if kind == "run_started":
            self.run_id = int(record["run_id"])
            sink.run_started(self.run_id, list(record["objects"]), int(record["chunks"]))
        elif kind == "chunk_started":
            self.held_chunks.add(record["chunk_id"])
            sink.chunk_started(record["run_id"], record["object"], record["chunk_id"], record.get("created_gte"),
                               record.get("created_lte"))
        elif kind == "objects_stored":
            sink.objects_stored(record["run_id"], record["object"], record["chunk_id"], record["count"])
        elif kind == "objects_estimated":
            sink.objects_estimated(record["run_id"], record["object"], record["estimated_total"])
        elif kind == "chunk_done":
            self.held_chunks.discard(record["chunk_id"])
            sink.chunk_done(record["run_id"], record["object"], record["chunk_id"], record["status"],
                            record["processed"], record.get("error"))
        elif kind == "request_rate":
            self.stats = RequestStats(float(record["requests_per_second"]), int(record.get("requests", 0)),
                                      int(record.get("rate_limited", 0)), int(record.get("retries", 0)))
            sink.request_rate(self.stats.requests_per_second)
        elif kind == "message":
            sink.message(record["level"], record["text"])
        elif kind == "backfill":
            self.results[record["object"]] = ObjectBackfillResult(
                **{f.name: record[f.name] for f in fields(ObjectBackfillResult)})

    def _outcome(self, sink: ProgressSink) -> BackfillResult:
        assert self.process is not None
        code = self.process.returncode
        reason = self._last_error()
        self._clean_up()
        if code in (EXIT_OK, EXIT_PARTIAL):
            if self.run_id is not None and self.results:
                sink.run_done(self.run_id, self.results)
            return self.results
        run = f"run #{self.run_id}" if self.run_id is not None else "the run"
        if code == EXIT_INTERRUPTED:
            who = "on request" if self.stop_requested else "by a signal from outside the console"
            raise WorkerStopped(f"The backfill worker (pid {self.pid}) stopped {who}: {run} stays open, "
                                "its chunks pending with their cursors; shift+r resumes it",
                                pid=self.pid, run_id=self.run_id, requested=self.stop_requested)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            held = len(self.held_chunks)
            raise WorkerKilled(
                f"The backfill worker (pid {self.pid}) was killed ({name}) before it could give its chunks "
                f"back: {held} chunk(s) of {run} still read 'running'. A resume takes them over once PostgreSQL "
                f"has closed the dead worker's session, at the latest when their {LEASE_SECONDS:.0f} s lease "
                "runs out; shift+r resumes", pid=self.pid, run_id=self.run_id, held_chunks=held)
        raise WorkerFailed(f"The backfill worker (pid {self.pid}) failed: {reason or f'exit code {code}'}",
                           pid=self.pid, run_id=self.run_id, exit_code=code)

    def _last_error(self) -> str:
        """The worker's last `error: ...` line (or its last line), masked."""
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        errors = [line for line in lines if line.startswith("error:")]
        chosen = (errors or lines or [""])[-1]
        return mask_secrets_in(chosen.removeprefix("error:").strip())

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _clean_up(self) -> None:
        self._close_stream()
        if self.directory is not None and not self.detached:
            shutil.rmtree(self.directory, ignore_errors=True)
