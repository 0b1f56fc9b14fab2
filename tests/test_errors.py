"""One error tree: every failure the engine reports on purpose is a StripeSyncError of one branch, and
the CLI and the console each map a branch once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import stripe_sync_core
from stripe_sync_core import (
    AccountDeletionRefused,
    BackfillInProgress,
    ConfigError,
    DatabaseUnavailable,
    InvalidSignature,
    NoOpenRun,
    ObjectNotFound,
    StripeApiError,
    StripeKeyMissing,
    StripeSyncError,
)
from stripe_sync_core.chunking import InvalidChunkSpec
from stripe_sync_core.registry import UnknownObjectType
from stripe_sync_core.runs import RunHeld
from stripe_sync_core.status import SchemaMissing
from stripe_sync_core.tunnel import TunnelError
from stripe_sync_tui.headless import EXIT_CODES
from stripe_sync_tui.problems import problem_from


def core_exception_classes() -> list[type[BaseException]]:
    found = []
    for module in pkgutil.walk_packages(stripe_sync_core.__path__, "stripe_sync_core."):
        for _, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("stripe_sync_core"):
                found.append(value)
    return sorted(set(found), key=lambda c: c.__name__)


def test_every_exception_of_the_core_descends_from_one_root():
    strays = [c.__name__ for c in core_exception_classes() if not issubclass(c, StripeSyncError)]
    assert strays == []
    assert len(core_exception_classes()) >= 18


@pytest.mark.parametrize(("error", "kind", "exit_code"), [
    (AccountDeletionRefused("an open run"), "refused", 2),
    (BackfillInProgress("run 3 in progress"), "refused", 2),
    (NoOpenRun("no open backfill"), "refused", 2),
    (RunHeld("run 3 is held by a live worker", []), "refused", 2),
    (ConfigError("bad setting"), "invalid_input", 2),
    (UnknownObjectType("widgets"), "invalid_input", 2),
    (InvalidChunkSpec("fortnight"), "invalid_input", 2),
    (InvalidSignature("no match"), "invalid_input", 2),
    (SchemaMissing("not migrated"), "not_configured", 2),
    (StripeKeyMissing(), "not_configured", 2),
    (StripeApiError("revoked", http_status=401), "not_configured", 2),
    (ObjectNotFound("no such customer", http_status=404), "invalid_input", 2),
    (StripeApiError("overloaded", http_status=503), "unavailable", 1),
    (StripeApiError("no answer"), "unavailable", 1),
    (DatabaseUnavailable("down"), "unavailable", 1),
    (TunnelError("agent died"), "unavailable", 1),
])
def test_each_branch_has_one_exit_code(error: StripeSyncError, kind: str, exit_code: int):
    assert error.kind == kind
    assert EXIT_CODES[error.kind] == exit_code


def test_built_in_bases_that_callers_catch_are_kept():
    assert issubclass(InvalidSignature, ValueError)  # the README's Flask handler catches ValueError
    assert issubclass(ConfigError, ValueError)
    assert issubclass(UnknownObjectType, KeyError)


@pytest.mark.parametrize(("error", "problem_kind"), [
    (DatabaseUnavailable("cannot connect"), "database"),
    (SchemaMissing("no stripe._sync_runs"), "schema"),
    (ConfigError("bad setting"), "config"),
    (StripeKeyMissing(), "stripe-key"),
    (StripeApiError("revoked", http_status=401), "stripe-key"),
    (StripeApiError("connection refused"), "stripe"),
    (StripeApiError("bad request", http_status=400), "stripe-call"),
    (AccountDeletionRefused("refused: 1 sync run(s) open"), "refused"),
    (TunnelError("agent died"), "unavailable"),
    (KeyError("a bug"), "unexpected"),
])
def test_the_console_chooses_a_problem_by_branch_not_by_message(error: BaseException, problem_kind: str):
    assert problem_from(error).kind == problem_kind


def test_a_missing_key_is_recognised_whatever_its_message_says():
    assert problem_from(StripeKeyMissing("set it in the vault")).kind == "stripe-key"
