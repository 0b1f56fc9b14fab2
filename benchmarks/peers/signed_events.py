"""Signed webhook deliveries for another engine, one JSON line each: {"body": ..., "signature": ...}.

The same bodies and signatures `webhook_load.py` hands our `process_webhook` (its `--mix`, its signing
secret `whsec_benchmarkSigningSecret0000`). Stripe's libraries refuse a signature older than 5 minutes:
write them just before the run.

    python benchmarks/peers/signed_events.py 20000 customers /tmp/events.jsonl
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import webhook_load  # noqa: E402


def main() -> None:
    count, mix, path = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    tag = f"peer{time.monotonic_ns()}"
    with path.open("w") as out:
        for body in webhook_load.build_payloads(tag, count, mix):
            out.write(json.dumps({"body": body, "signature": webhook_load.sign(body)}) + "\n")


if __name__ == "__main__":
    main()
