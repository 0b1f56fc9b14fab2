"""Scheduled work of `serve` processes: one row per (job, interval slot), so a job fires once per slot.

Every `serve` process of a database looks at the schedule now and then; the one whose
`INSERT ... ON CONFLICT DO NOTHING` creates the row of the current slot runs the job, the others find it
taken. A claim is one statement in its own transaction (no session state, no advisory lock), so it works
through a transaction-mode pooler (PgBouncer, Supabase's port 6543) and a process that dies holds
nothing. The row then records who ran the job, when it finished and how (`outcome`); old slots are pruned.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._service_lease (
            job text NOT NULL,
            slot bigint NOT NULL,
            holder text NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            outcome text,
            PRIMARY KEY (job, slot)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stripe._service_lease")
