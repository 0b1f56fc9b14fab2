"""The last drift check (`verify`) of each object type, per account.

One row per (account, object): when it ran, how many objects it compared, how many rows disagreed with
Stripe by kind (missing, deleted, changed, stale), how many a repair wrote, and the first differences
(ids and fields). The console and `status` read it; a new verify of the type replaces it.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS stripe._verify_results (
            account_id text NOT NULL,
            object text NOT NULL,
            checked_at timestamptz NOT NULL,
            checked integer NOT NULL,
            missing integer NOT NULL,
            deleted integer NOT NULL,
            changed integer NOT NULL,
            stale integer NOT NULL,
            repaired integer NOT NULL,
            repair boolean NOT NULL,
            sample integer,
            since bigint,
            differences jsonb NOT NULL DEFAULT '[]',
            PRIMARY KEY (account_id, object)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stripe._verify_results")
