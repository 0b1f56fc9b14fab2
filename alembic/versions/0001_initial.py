"""Initial schema: one table per supported Stripe object type, sync bookkeeping, the event log.

Typed columns were chosen from Stripe's sample objects (scripts/choose_columns.py) and are frozen here:
a later change to the columns is a new migration, never an edit of this one.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# table -> "name[:kind] ..."; kind is text when omitted. Every column is GENERATED from `_raw_data`.
OBJECT_COLUMNS: dict[str, str] = {
    "accounts": (
        "business_type charges_enabled:boolean country created:timestamp default_currency "
        "details_submitted:boolean email object payouts_enabled:boolean type"
    ),
    "customers": (
        "balance:bigint created:timestamp currency default_source:reference delinquent:boolean "
        "description email invoice_prefix livemode:boolean name next_invoice_sequence:bigint "
        "object phone tax_exempt test_clock:reference"
    ),
    "products": (
        "active:boolean created:timestamp default_price:reference description livemode:boolean "
        "name object shippable statement_descriptor tax_code:reference unit_label "
        "updated:timestamp url type"
    ),
    "prices": (
        "active:boolean billing_scheme created:timestamp currency livemode:boolean lookup_key "
        "nickname object product:reference tax_behavior tiers_mode type unit_amount:bigint "
        "unit_amount_decimal"
    ),
    "plans": (
        "active:boolean amount:bigint amount_decimal billing_scheme created:timestamp currency "
        "interval interval_count:bigint livemode:boolean meter nickname object product:reference "
        "tiers_mode trial_period_days usage_type"
    ),
    "coupons": (
        "amount_off:bigint created:timestamp currency duration duration_in_months:bigint "
        "livemode:boolean max_redemptions name object percent_off:numeric redeem_by:timestamp "
        "times_redeemed:bigint valid:boolean"
    ),
    "promotion_codes": (
        "active:boolean code created:timestamp customer:reference expires_at:timestamp "
        "livemode:boolean max_redemptions object times_redeemed:bigint customer_account:reference"
    ),
    "tax_rates": (
        "active:boolean country created:timestamp description display_name effective_percentage "
        "inclusive:boolean jurisdiction jurisdiction_level livemode:boolean object "
        "percentage:bigint state tax_type rate_type"
    ),
    "subscriptions": (
        "application:reference application_fee_percent:bigint billing_cycle_anchor:timestamp "
        "cancel_at:timestamp canceled_at:timestamp collection_method created:timestamp currency "
        "customer:reference days_until_due default_payment_method:reference "
        "default_source:reference description ended_at:timestamp latest_invoice:reference "
        "livemode:boolean next_pending_invoice_item_invoice:timestamp object "
        "on_behalf_of:reference pending_setup_intent:reference schedule:reference "
        "start_date:timestamp status test_clock:reference trial_end:timestamp "
        "trial_start:timestamp cancel_at_period_end:boolean customer_account:reference"
    ),
    "subscription_items": (
        "created:timestamp object price:reference quantity:bigint subscription:reference "
        "plan:reference current_period_end:timestamp current_period_start:timestamp"
    ),
    "subscription_schedules": (
        "application:reference canceled_at:timestamp completed_at:timestamp created:timestamp "
        "customer:reference end_behavior livemode:boolean object released_at:timestamp "
        "released_subscription status subscription:reference test_clock:reference "
        "customer_account:reference"
    ),
    "invoices": (
        "account_country account_name account_tax_ids amount_due:bigint amount_paid:bigint "
        "amount_remaining:bigint amount_shipping:bigint application:reference "
        "attempt_count:bigint attempted:boolean auto_advance:boolean billing_reason "
        "collection_method created:timestamp currency custom_fields customer:reference "
        "customer_email customer_name customer_phone customer_tax_exempt "
        "default_payment_method:reference default_source:reference description due_date:timestamp "
        "effective_at:timestamp ending_balance:bigint footer hosted_invoice_url invoice_pdf "
        "latest_revision livemode:boolean next_payment_attempt:timestamp number object "
        "on_behalf_of:reference period_end:timestamp period_start:timestamp "
        "post_payment_credit_notes_amount:bigint pre_payment_credit_notes_amount:bigint "
        "receipt_number starting_balance:bigint statement_descriptor status "
        "subscription:reference subtotal:bigint subtotal_excluding_tax:bigint "
        "test_clock:reference total:bigint total_excluding_tax:bigint "
        "webhooks_delivered_at:timestamp automatically_finalizes_at:timestamp "
        "total_pretax_credit_amounts:bigint total_taxes:bigint amount_overpaid:bigint "
        "customer_account:reference"
    ),
    "invoice_items": (
        "amount:bigint currency customer:reference date:bigint description discountable:boolean "
        "invoice:reference livemode:boolean object proration:boolean quantity:bigint "
        "test_clock:reference net_amount:bigint customer_account:reference quantity_decimal"
    ),
    "credit_notes": (
        "amount:bigint amount_shipping:bigint created:timestamp currency customer:reference "
        "customer_balance_transaction:reference discount_amount:bigint effective_at:timestamp "
        "invoice:reference livemode:boolean memo number object out_of_band_amount:bigint pdf "
        "status subtotal:bigint subtotal_excluding_tax:bigint total:bigint "
        "total_excluding_tax:bigint type voided_at:timestamp total_taxes:bigint "
        "post_payment_amount:bigint pre_payment_amount:bigint reason customer_account:reference"
    ),
    "charges": (
        "amount:bigint amount_captured:bigint amount_refunded:bigint application:reference "
        "application_fee:reference application_fee_amount:bigint balance_transaction:reference "
        "calculated_statement_descriptor captured:boolean created:timestamp currency "
        "customer:reference description disputed:boolean failure_balance_transaction:reference "
        "failure_code failure_message livemode:boolean object on_behalf_of:reference paid:boolean "
        "payment_intent:reference payment_method:reference receipt_email receipt_number "
        "receipt_url refunded:boolean review:reference source_transfer:reference "
        "statement_descriptor statement_descriptor_suffix status transfer_group source:reference"
    ),
    "refunds": (
        "amount:bigint balance_transaction:reference charge:reference created:timestamp currency "
        "object payment_intent:reference reason receipt_number source_transfer_reversal status "
        "transfer_reversal customer:reference customer_account:reference payment_method:reference"
    ),
    "disputes": (
        "amount:bigint charge:reference created:timestamp currency is_charge_refundable:boolean "
        "livemode:boolean object payment_intent:reference reason status"
    ),
    "payment_intents": (
        "amount:bigint amount_capturable:bigint amount_received:bigint application:reference "
        "application_fee_amount:bigint canceled_at:timestamp cancellation_reason capture_method "
        "client_secret confirmation_method created:timestamp currency customer:reference "
        "description latest_charge:reference livemode:boolean object on_behalf_of:reference "
        "payment_method:reference receipt_email review:reference setup_future_usage "
        "statement_descriptor statement_descriptor_suffix status transfer_group source:reference "
        "excluded_payment_method_types customer_account:reference"
    ),
    "payment_methods": (
        "allow_redisplay created:timestamp customer:reference livemode:boolean object type "
        "customer_account:reference"
    ),
    "setup_intents": (
        "application:reference cancellation_reason client_secret created:timestamp "
        "customer:reference description flow_directions latest_attempt:reference livemode:boolean "
        "mandate:reference object on_behalf_of:reference payment_method:reference "
        "single_use_mandate:reference status usage excluded_payment_method_types"
    ),
    "payouts": (
        "amount:bigint application_fee:reference application_fee_amount:bigint "
        "arrival_date:timestamp automatic:boolean balance_transaction:reference created:timestamp "
        "currency description destination:reference failure_balance_transaction:reference "
        "failure_code failure_message livemode:boolean method object original_payout:reference "
        "reconciliation_status reversed_by:reference source_type statement_descriptor status type "
        "payout_method"
    ),
    "balance_transactions": (
        "amount:bigint available_on:timestamp created:timestamp currency description "
        "exchange_rate fee:bigint net:bigint object reporting_category source:reference status "
        "type balance_type"
    ),
    "transfers": (
        "amount:bigint amount_reversed:bigint balance_transaction:reference created:timestamp "
        "currency description destination:reference destination_payment:reference "
        "livemode:boolean object reversed:boolean source_transaction:reference source_type "
        "transfer_group"
    ),
    "checkout_sessions": (
        "allow_promotion_codes amount_subtotal:bigint amount_total:bigint "
        "billing_address_collection cancel_url client_reference_id client_secret "
        "created:timestamp currency customer:reference customer_creation customer_email "
        "expires_at:timestamp invoice:reference livemode:boolean locale mode object "
        "payment_intent:reference payment_link:reference payment_method_collection payment_status "
        "recovered_from setup_intent:reference status submit_type subscription:reference "
        "success_url ui_mode url discounts origin_context customer_account:reference "
        "integration_identifier"
    ),
    "checkout_session_line_items": (
        "amount_discount:bigint amount_subtotal:bigint amount_tax:bigint amount_total:bigint "
        "currency description object price:reference quantity:bigint"
    ),
    "tax_ids": (
        "country created:timestamp customer:reference livemode:boolean object type value "
        "customer_account:reference"
    ),
    "early_fraud_warnings": (
        "actionable:boolean charge:reference created:timestamp fraud_type livemode:boolean object"
    ),
    "reviews": (
        "billing_zip charge:reference created:timestamp ip_address livemode:boolean object "
        "open:boolean opened_reason closed_reason reason"
    ),
    "features": (
        "active:boolean livemode:boolean lookup_key name object"
    ),
    "active_entitlements": (
        "feature:reference livemode:boolean lookup_key object"
    ),
}

# Columns filled from the parent's id, for objects that do not name their parent themselves.
PARENT_COLUMNS = {"checkout_session_line_items": "checkout_session", "active_entitlements": "customer"}

# References people join on; each gets an index where the table has it.
JOIN_REFERENCES = ("customer", "subscription", "invoice", "payment_intent", "charge", "product", "price")


def _generated(name: str, kind: str) -> str:
    value, as_text = f"_raw_data->'{name}'", f"(_raw_data->>'{name}')"
    # Casts are guarded by jsonb_typeof: a payload of an unexpected shape must still be stored.
    if kind == "text":
        return as_text
    if kind == "reference":  # the id, whether the payload carries the id or the expanded object
        return f"CASE WHEN jsonb_typeof({value}) = 'object' THEN {value}->>'id' ELSE {as_text} END"
    if kind == "bigint":
        return f"CASE WHEN jsonb_typeof({value}) = 'number' THEN {as_text}::numeric::bigint END"
    if kind == "numeric":
        return f"CASE WHEN jsonb_typeof({value}) = 'number' THEN {as_text}::numeric END"
    if kind == "boolean":
        return f"CASE WHEN jsonb_typeof({value}) = 'boolean' THEN {as_text}::boolean END"
    if kind == "timestamp":
        return f"CASE WHEN jsonb_typeof({value}) = 'number' THEN to_timestamp({as_text}::double precision) END"
    raise ValueError(f"unknown column kind {kind!r}")


_SQL_TYPES = {"text": "text", "reference": "text", "bigint": "bigint", "numeric": "numeric",
              "boolean": "boolean", "timestamp": "timestamptz"}


def _columns(spec: str) -> list[tuple[str, str]]:
    return [(token.partition(":")[0], token.partition(":")[2] or "text") for token in spec.split()]


def _create_object_table(table: str, spec: str) -> None:
    lines = [
        "_raw_data jsonb NOT NULL",
        "id text GENERATED ALWAYS AS (_raw_data->>'id') STORED PRIMARY KEY",
    ]
    columns = _columns(spec)
    for name, kind in columns:
        lines.append(f'"{name}" {_SQL_TYPES[kind]} GENERATED ALWAYS AS ({_generated(name, kind)}) STORED')
    lines.append("deleted boolean GENERATED ALWAYS AS "
                 "(COALESCE(CASE WHEN jsonb_typeof(_raw_data->'deleted') = 'boolean' "
                 "THEN (_raw_data->>'deleted')::boolean END, false)) STORED")
    parent_column = PARENT_COLUMNS.get(table)
    if parent_column:
        lines.append(f'"{parent_column}" text')
    lines += [
        "_account_id text NOT NULL REFERENCES stripe.accounts (id)",
        "_last_synced_at timestamptz",
        "_updated_at timestamptz NOT NULL DEFAULT now()",
    ]
    body = ",\n    ".join(lines)
    op.execute(f"CREATE TABLE IF NOT EXISTS stripe.{table} (\n    {body}\n)")
    op.execute(f"CREATE INDEX IF NOT EXISTS {table}_account_idx ON stripe.{table} (_account_id)")
    indexed = {name for name, _ in columns if name in JOIN_REFERENCES}
    if parent_column:
        indexed.add(parent_column)
    for name in sorted(indexed):
        op.execute(f'CREATE INDEX IF NOT EXISTS {table}_{name}_idx ON stripe.{table} ("{name}")')
    op.execute(f"DROP TRIGGER IF EXISTS set_updated_at ON stripe.{table}")
    op.execute(f"CREATE TRIGGER set_updated_at BEFORE UPDATE ON stripe.{table} "
               "FOR EACH ROW EXECUTE FUNCTION stripe.set_updated_at()")


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION stripe.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW._updated_at := now();
            RETURN NEW;
        END $$
    """)
    # accounts first: every other table references it (an account row references itself).
    for table, spec in OBJECT_COLUMNS.items():
        _create_object_table(table, spec)

    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._managed_webhooks (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES stripe.accounts (id),
            url text NOT NULL,
            enabled_events jsonb NOT NULL DEFAULT '[]',
            secret text NOT NULL,
            status text NOT NULL DEFAULT 'enabled',
            deployment_id text NOT NULL,
            _raw_data jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            _updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (url, account_id)
        )
    """)
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._sync_runs (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL REFERENCES stripe.accounts (id),
            trigger text NOT NULL DEFAULT 'backfill',
            objects text[] NOT NULL,
            params jsonb NOT NULL DEFAULT '{}',
            started_at timestamptz NOT NULL DEFAULT now(),
            closed_at timestamptz,
            high_water_mark bigint,
            events_cursor bigint,
            error_message text,
            _updated_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS _sync_runs_one_open_idx "
               "ON stripe._sync_runs (account_id, trigger) WHERE closed_at IS NULL")
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._sync_obj_runs (
            id bigserial PRIMARY KEY,
            run_id bigint NOT NULL REFERENCES stripe._sync_runs (id) ON DELETE CASCADE,
            object text NOT NULL,
            created_gte bigint,
            created_lte bigint,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'complete', 'error')),
            page_cursor text,
            processed_count bigint NOT NULL DEFAULT 0,
            error_message text,
            attempts integer NOT NULL DEFAULT 0,
            worker_id text,
            started_at timestamptz,
            completed_at timestamptz,
            _updated_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX IF NOT EXISTS _sync_obj_runs_run_idx ON stripe._sync_obj_runs (run_id, status)")
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._events (
            id text PRIMARY KEY,
            type text NOT NULL,
            account_id text,
            object_id text,
            event_created timestamptz,
            received_at timestamptz NOT NULL DEFAULT now(),
            outcome text NOT NULL,
            detail text
        )
    """)
    op.execute("CREATE INDEX IF NOT EXISTS _events_received_idx ON stripe._events (received_at)")
    for table in ("_managed_webhooks", "_sync_runs", "_sync_obj_runs"):
        op.execute(f"DROP TRIGGER IF EXISTS set_updated_at ON stripe.{table}")
        op.execute(f"CREATE TRIGGER set_updated_at BEFORE UPDATE ON stripe.{table} "
                   "FOR EACH ROW EXECUTE FUNCTION stripe.set_updated_at()")
    op.execute("""
        CREATE OR REPLACE VIEW stripe.sync_runs AS
        WITH per_object AS (
            SELECT run_id, object,
                   sum(processed_count) AS processed,
                   CASE
                       WHEN bool_or(status = 'running') THEN 'running'
                       WHEN bool_and(status = 'complete') THEN 'complete'
                       WHEN bool_or(status = 'error') AND NOT bool_or(status = 'pending') THEN 'error'
                       WHEN bool_and(status = 'pending') THEN 'pending'
                       ELSE 'running'
                   END AS status
            FROM stripe._sync_obj_runs
            GROUP BY run_id, object
        )
        SELECT r.id AS run_id,
               r.account_id,
               r.trigger,
               r.started_at,
               r.closed_at,
               CASE
                   WHEN r.closed_at IS NULL AND count(o.object) FILTER (WHERE o.status = 'running') > 0
                       THEN 'running'
                   WHEN r.closed_at IS NULL AND count(o.object) FILTER (WHERE o.status <> 'pending') = 0
                       THEN 'pending'
                   WHEN r.closed_at IS NULL THEN 'running'
                   WHEN r.error_message IS NOT NULL
                        OR count(o.object) FILTER (WHERE o.status = 'error') > 0 THEN 'error'
                   ELSE 'complete'
               END AS status,
               COALESCE(sum(o.processed), 0)::bigint AS total_processed,
               count(o.object) FILTER (WHERE o.status = 'complete') AS complete_count,
               count(o.object) FILTER (WHERE o.status = 'error') AS error_count,
               count(o.object) FILTER (WHERE o.status = 'running') AS running_count,
               count(o.object) FILTER (WHERE o.status = 'pending') AS pending_count
        FROM stripe._sync_runs r
        LEFT JOIN per_object o ON o.run_id = r.id
        GROUP BY r.id
    """)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS stripe.sync_runs")
    for table in ("_events", "_sync_obj_runs", "_sync_runs", "_managed_webhooks"):
        op.execute(f"DROP TABLE IF EXISTS stripe.{table}")
    for table in reversed(list(OBJECT_COLUMNS)):
        op.execute(f"DROP TABLE IF EXISTS stripe.{table}")
    op.execute("DROP FUNCTION IF EXISTS stripe.set_updated_at()")
