"""The console's webhook listener, in a child process of its own.

A burst of webhooks is CPU work (verify, parse, write); in the console's process it would share the GIL
with key handling. So the console runs `stripe-sync-tui --headless --json listen --stop-on-eof`, the
headless command, with the console's settings in its environment (`SyncConfig.child_environment`), and
follows its stdout in a reader thread: each `event` line goes to the console's progress sink (the feed),
each `message` line too (the ready banner, catch-up), and `listener_state` lines keep the listener's
state (URLs, webhook, catch-up, counters) for the screen's next refresh.

Closing the child's stdin stops it the way Ctrl-C stops the headless command (its managed webhook stays
registered for the next start, as the in-process listener left it); if the console dies, the closed
pipe stops the child too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import deque
from datetime import datetime
from typing import IO, Any

from stripe_sync_core.config import SyncConfig
from stripe_sync_core.errors import Unavailable
from stripe_sync_core.listener import CatchUp, ListenerState
from stripe_sync_core.masking import mask_secrets_in
from stripe_sync_core.progress import ProgressSink

from .worker_priority import LISTENER_NICENESS, run_below_console

START_TIMEOUT = 60.0
"""Seconds for the child to serve and register its webhook (a tunnel can take a while)."""
STOP_TIMEOUT = 15.0
"""Seconds for in-flight deliveries to finish after stdin closes, before SIGTERM, then SIGKILL."""
STDERR_LINES = 20


class ListenerFailed(Unavailable):
    """The listener process exited, or did not get ready; the message is its last words on stderr."""


def listener_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "stripe_sync_tui.cli", "--headless", "--json", "listen",
            "--host", host, "--port", str(port), "--stop-on-eof"]


def state_from_record(record: dict[str, Any]) -> ListenerState:
    """Read a `listener_state` line back into the core's `ListenerState` (the inverse of
    `headless.listener_state_record`)."""
    catch_up = dict(record.get("catch_up") or {})
    since = catch_up.get("since")
    catch_up["since"] = datetime.fromisoformat(since) if isinstance(since, str) else None
    known_catch_up = CatchUp.__dataclass_fields__
    known = ListenerState.__dataclass_fields__
    return ListenerState(**{k: v for k, v in record.items() if k in known and k != "catch_up"},
                         catch_up=CatchUp(**{k: v for k, v in catch_up.items() if k in known_catch_up}))


class ListenerProcess:
    """One listener child process and the threads that follow it."""

    def __init__(self, config: SyncConfig, sink: ProgressSink, host: str, port: int) -> None:
        self.config = config
        self.sink = sink
        self.command = listener_command(host, port)
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._state = ListenerState()
        self._ready = threading.Event()
        self._stopping = False
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._threads: list[threading.Thread] = []

    # -- what the console reads -----------------------------------------------------------------

    @property
    def state(self) -> ListenerState:
        """The last state the child reported (`running` false once it exited)."""
        with self._lock:
            state = self._state
        if not self.alive and state.running:
            state = ListenerState(**{**state.__dict__, "running": False})
        return state

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def failure(self) -> str | None:
        """Why the child exited when nobody asked it to (None while it runs, or after a stop)."""
        if self.process is None or self.alive or self._stopping:
            return None
        return self._last_words()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def check_webhook(self) -> None:
        """Ask the child to check its managed webhook now (after a deletion removed one from Stripe): it
        re-registers or stops, and its next state line says which (`notice`)."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGUSR1)

    # -- lifecycle (blocking: call from a thread) -------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> ListenerState:
        """Spawn the child and wait until it serves (its `listening` line); raises `ListenerFailed`."""
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.config.child_environment(), start_new_session=True)  # a Ctrl-C in the console is not its
        run_below_console(self.process.pid, LISTENER_NICENESS)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._follow(self._read_stdout, self.process.stdout, "listener-stdout")
        self._follow(self._read_stderr, self.process.stderr, "listener-stderr")
        while not self._ready.wait(0.05):
            if not self.alive:
                self._join_readers()
                raise ListenerFailed(f"the listener did not start: {self._last_words()}")
            timeout -= 0.05
            if timeout <= 0:
                self.stop()
                raise ListenerFailed(f"the listener did not get ready: {self._last_words()}")
        return self.state

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close the child's stdin (it stops like Ctrl-C stops `listen`); SIGTERM, then SIGKILL if it
        does not exit in time."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        for escalate in (process.terminate, process.kill):
            try:
                process.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                escalate()
        else:
            process.wait()
        self._join_readers()

    # -- following the child ----------------------------------------------------------------------

    def _follow(self, target: Any, stream: IO[bytes], name: str) -> None:
        thread = threading.Thread(target=target, args=(stream,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)

    def _read_stdout(self, stream: IO[bytes]) -> None:
        sink = self.sink
        for raw in stream:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # stdout is data in --json mode; anything else is not ours to show
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind == "event":
                sink.event_received(str(record.get("id") or "-"), str(record.get("type") or "-"),
                                    str(record.get("outcome") or "-"), record.get("status"))
            elif kind == "message":
                sink.message(str(record.get("level") or "info"), str(record.get("text") or ""))
            elif kind == "listener_state":
                state = state_from_record(record)
                with self._lock:
                    self._state = state
            elif kind == "listening":
                with self._lock:
                    self._state = ListenerState(
                        running=True, local_url=record.get("local_url"), public_url=record.get("public_url"),
                        webhook_url=record.get("webhook_url"), webhook_id=record.get("webhook_id"),
                        catch_up=CatchUp(state=str(record.get("catch_up") or "pending")))
                self._ready.set()
        stream.close()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(mask_secrets_in(line))
        stream.close()

    def _last_words(self) -> str:
        errors = [line for line in self._stderr if line.startswith("error:")]
        code = self.process.returncode if self.process else None
        said = errors[-1].removeprefix("error: ") if errors else (self._stderr[-1] if self._stderr else "")
        return f"{said or 'no message'} (exit code {code})"
