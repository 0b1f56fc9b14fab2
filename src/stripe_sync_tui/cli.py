"""Command line: `stripe-sync-tui` opens the console; `stripe-sync-tui --headless <command>` runs one job.

Settings come from flags, then the environment, then the TOML config file, then defaults.
Exit codes: 0 done, 1 failed, 2 usage or refused, 3 finished with some chunks in error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

DESCRIPTION = """\
Keep a PostgreSQL copy of a Stripe account exact and current.

Without --headless, opens the operator console. With --headless, runs one command and exits.
"""

SETTINGS_HELP = """\
settings (flag > environment variable > config file > default):
  --database-url      DATABASE_URL           embedded PostgreSQL in the user data directory
  --stripe-key        STRIPE_API_KEY         (none: the console offers the demo)
  --webhook-secret    STRIPE_WEBHOOK_SECRET  (none: only managed webhooks' secrets are accepted)
  --stripe-api-base   STRIPE_API_BASE        https://api.stripe.com
  --ngrok-token       NGROK_AUTHTOKEN        (none: the listener serves locally, no tunnel)
  config file: $STRIPE_SYNC_CONFIG or {config_path}
    (TOML, SyncConfig names: database_url, stripe_secret_key, max_retries, auto_expand_lists, ...)
  Secrets are never printed in full: only their last four characters.

exit codes: 0 done, 1 failed, 2 usage error or refused, 3 finished with some chunks in error,
            130 interrupted (Ctrl-C, SIGTERM or a closed terminal; an interrupted backfill is resumable)

examples:
  stripe-sync-tui --demo                                    console on generated data, offline
  stripe-sync-tui --headless migrate --database-url postgresql://localhost/app
  stripe-sync-tui --headless backfill all --since 2024-01-01 --chunk week --concurrency 8
  stripe-sync-tui --headless --json status
  stripe-sync-tui --headless delete-account acct_123 --abandon-runs --yes
                                                            close its open runs, then delete its data
"""


def build_parser() -> argparse.ArgumentParser:
    from stripe_sync_core.config import default_config_path

    parser = argparse.ArgumentParser(
        prog="stripe-sync-tui", description=DESCRIPTION,
        epilog=SETTINGS_HELP.format(config_path=default_config_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings(parser)
    parser.add_argument("--headless", action="store_true", help="run a command without the console")
    parser.add_argument("--demo", action="store_true",
                        help="offline demo: embedded PostgreSQL, local Stripe emulator, live trickle of events")
    parser.add_argument("--read-only", action="store_true",
                        help="console: hide every action that writes to Stripe or deletes data")
    parser.add_argument("--json", action="store_true", help="headless: JSON lines on stdout, logs on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import headless

    headless.add_commands(commands, parents=[_settings_parent()])
    return parser


def _add_settings(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("settings")
    group.add_argument("--database-url", default=default, metavar="URL",
                       help="PostgreSQL URL (env DATABASE_URL; default: embedded server)")
    group.add_argument("--stripe-key", default=default, metavar="KEY",
                       help="Stripe secret or restricted key (env STRIPE_API_KEY)")
    group.add_argument("--webhook-secret", default=default, metavar="WHSEC",
                       help="webhook signing secret (env STRIPE_WEBHOOK_SECRET)")
    group.add_argument("--stripe-api-base", default=default, metavar="URL",
                       help="Stripe API base URL, e.g. a local emulator (env STRIPE_API_BASE)")
    group.add_argument("--ngrok-token", default=default, metavar="TOKEN",
                       help="ngrok auth token for the listener's tunnel (env NGROK_AUTHTOKEN)")
    group.add_argument("--config", default=default, metavar="FILE", help="TOML config file")


def _settings_parent() -> argparse.ArgumentParser:
    # Every global flag is accepted after the command too (`backfill all --demo --json`); SUPPRESS
    # keeps an absent one from overwriting what came before the command.
    parent = argparse.ArgumentParser(add_help=False)
    _add_settings(parent, suppress=True)
    flags = parent.add_argument_group("global flags (before or after the command)")
    flags.add_argument("--headless", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    flags.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="JSON lines on stdout, logs on stderr")
    flags.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                       help="offline: embedded PostgreSQL and the local Stripe emulator")
    flags.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more on stderr")
    return parent


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP (a closed terminal) end the program the way Ctrl-C does: work is cancelled
    cleanly (a backfill stays resumable) and the embedded PostgreSQL is stopped instead of orphaned.

    A process leading a session of its own (the console's backfill workers and listener) heeds SIGINT
    even when it inherited it ignored (a console started from a script in the background): no terminal
    sends it there, only whoever stops the process on purpose."""
    for stop in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if stop is not None:
            signal.signal(stop, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and os.getsid(0) == os.getpid():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import headless

    if threading.current_thread() is threading.main_thread():
        stop_like_ctrl_c()

    if args.command and not args.headless:
        parser.error(f"'{args.command}' is a headless command: run `stripe-sync-tui --headless {args.command}`")
    if args.headless and not args.command:
        parser.error("--headless needs a command; see `stripe-sync-tui --help`")
    try:
        if args.headless:
            return headless.run(args)
        return headless.open_console(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
