"""Derive typed-column choices for each supported object from Stripe's sample objects.

Run once when adding an object type; paste the printed dict into the new migration.
Usage: python scripts/choose_columns.py ../shared/stripe-fixtures/fixtures3.json
"""

import json
import sys

from stripe_sync_core.registry import REGISTRY

REFERENCE_FIELDS = {
    "account", "application", "application_fee", "balance_transaction", "charge", "coupon", "customer",
    "customer_account", "customer_balance_transaction", "default_payment_method", "default_price",
    "default_source", "destination", "destination_payment", "dispute", "failure_balance_transaction",
    "feature", "invoice", "latest_attempt", "latest_charge", "latest_invoice", "mandate", "on_behalf_of",
    "original_payout", "payment_intent", "payment_link", "payment_method", "payout", "pending_setup_intent",
    "plan", "price", "product", "promotion_code", "refund", "review", "reversed_by", "schedule",
    "setup_intent", "single_use_mandate", "source", "source_transaction", "source_transfer", "subscription",
    "subscription_item", "tax_code", "test_clock", "transfer", "credit_note", "invoice_item",
}
EPOCH_FIELDS = {
    "created", "start_date", "due_date", "period_start", "period_end", "trial_start", "trial_end",
    "arrival_date", "available_on", "billing_cycle_anchor", "current_period_start", "current_period_end",
    "next_payment_attempt", "next_pending_invoice_item_invoice", "automatically_finalizes_at",
    "redeem_by", "expires_at", "effective_at", "cancel_at", "canceled_at", "ended_at", "voided_at",
    "webhooks_delivered_at", "updated", "closed_at", "completed_at", "released_at", "evidence_due_by",
}
MONEY_WORDS = ("amount", "total", "subtotal", "balance", "fee", "net", "unit_amount")


def is_epoch(name: str) -> bool:
    return name in EPOCH_FIELDS or name.endswith("_at")


def kind_of(name: str, value: object) -> str | None:
    if name in ("id", "metadata"):
        return None
    if name in REFERENCE_FIELDS and (value is None or isinstance(value, str) or
                                     (isinstance(value, dict) and "id" in value)):
        return "reference"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "timestamp" if is_epoch(name) else "bigint"
    if isinstance(value, float):
        return "numeric"
    if isinstance(value, str):
        return "text"
    if value is None:
        if is_epoch(name):
            return "timestamp"
        if any(w in name for w in MONEY_WORDS) and not name.endswith(("_details", "_data", "_behavior")):
            return "bigint"
        return "text"
    return None


def main() -> None:
    resources = json.load(open(sys.argv[1]))["resources"]
    out = {}
    for object_type in REGISTRY.values():
        sample = resources[object_type.fixture_key]
        out[object_type.table] = {name: k for name, value in sample.items() if (k := kind_of(name, value))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
