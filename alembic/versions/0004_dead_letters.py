"""Dead letters: signed webhook events that cannot be stored, kept with their body and the reason.

A delivery PostgreSQL cannot take as it is (a NaN, an integer over bigint in a typed column, a
`\\u0000` in an id, nesting beyond what a parser accepts) fails the same way on every retry: answering
5xx would have Stripe retry it for three days and then disable the endpoint. It is acknowledged
instead and kept here, body byte for byte (`bytea`: it may hold what `text` cannot), visible in
`status` and the console. A redelivery of the same event is one record.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._dead_letters (
            id bigserial PRIMARY KEY,
            event_id text,
            event_type text,
            account_id text,
            received_at timestamptz NOT NULL DEFAULT now(),
            deliveries integer NOT NULL DEFAULT 1,
            reason text NOT NULL,
            body bytea NOT NULL
        )
    """)
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS _dead_letters_event_idx ON stripe._dead_letters (event_id) "
               "WHERE event_id IS NOT NULL")
    op.execute("CREATE INDEX IF NOT EXISTS _dead_letters_received_idx ON stripe._dead_letters (received_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stripe._dead_letters")
