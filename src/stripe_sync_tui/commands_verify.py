"""`verify`: the headless drift check (compare the database with Stripe, optionally repair)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from stripe_sync_core.config import SyncConfig
from stripe_sync_core.errors import InvalidInput

from .output import Output

if TYPE_CHECKING:
    from stripe_sync_core import StripeSync, VerifyResult

EXIT_OK, EXIT_DRIFT = 0, 3
_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")
COLUMNS = ["object", "checked", "missing", "deleted", "changed", "stale", "repaired"]


class VerifyUsageError(InvalidInput):
    """Bad input to `verify`; exit code 2."""


def add_verify_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    verify = command("verify", "compare the database with Stripe: rows missing, deleted, changed or stale per "
                               "type (exit 3 when drift is left); --repair stores Stripe's state")
    verify.add_argument("object", nargs="?", default="all",
                        help="an object type, several separated by commas, or 'all' (default)")
    verify.add_argument("--account", metavar="ACCT", default=None,
                        help="the account to verify (default: the key's own account)")
    verify.add_argument("--since", metavar="DATE", help="only objects created on or after (YYYY-MM-DD)")
    verify.add_argument("--sample", type=_positive, default=None, metavar="N",
                        help="per type, only the newest N objects and N random stored rows")
    verify.add_argument("--repair", action="store_true",
                        help="store Stripe's current state of every differing row (never over a later one)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --sample {text!r}: a whole number of objects") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid --sample {text!r}: at least 1")
    return value


async def cmd_verify(args: argparse.Namespace, config: SyncConfig, out: Output,
                     with_engine: Callable[..., Awaitable[int]]) -> int:
    from stripe_sync_core.chunking import parse_created_bound
    from stripe_sync_core.registry import object_type

    objects: str | list[str] = "all"
    if args.object != "all":
        from .headless import split_names

        objects = split_names([args.object])
        if not objects:
            raise VerifyUsageError("name an object type, several separated by commas, or 'all'")
        for name in objects:
            object_type(name)  # an unknown one is a clear error before any connection
    if args.account is not None and not _ACCOUNT_ID.fullmatch(args.account):
        raise VerifyUsageError(f"invalid --account {args.account!r}: an account id (acct_...)")
    since = parse_created_bound(args.since)

    async def body(sync: StripeSync) -> int:
        results = await sync.verify(objects, account_id=args.account, since=since, sample=args.sample,
                                    repair=args.repair)
        print_results(out, results)
        left = sum(r.drift for r in results) - (sum(r.repaired for r in results) if args.repair else 0)
        return EXIT_DRIFT if left > 0 else EXIT_OK

    return await with_engine(config, out, body, needs_stripe=True)


def print_results(out: Output, results: list[VerifyResult]) -> None:
    if out.json_mode:
        for result in results:
            out.data({"kind": "verify", **result.to_dict()})
        return
    out.table([{c: getattr(r, c) for c in COLUMNS} for r in results], COLUMNS, kind="verify")
    rows = [{"object": r.object, "id": d.id, "kind": d.kind, "fields": ", ".join(d.fields) or "-"}
            for r in results for d in r.differences]
    if rows:
        out.data({}, text="")
        out.table(rows, ["object", "id", "kind", "fields"], kind="verify_difference")
    drift = sum(r.drift for r in results)
    account = results[0].account_id if results else "-"
    summary = (f"{account}: {sum(r.checked for r in results):,} object(s) compared, "
               f"{drift:,} differ" + (f", {sum(r.repaired for r in results):,} repaired"
                                      if any(r.repair for r in results) else ""))
    out.log(summary)
