"""Backfill chunks: worker lease, high-water mark, child counts and size estimate per chunk.

`heartbeat_at` and `worker_key` make a claim reclaimable when its worker dies (the key names a
session advisory lock the worker holds while alive; the heartbeat covers a worker that hangs or a
host that vanishes). `max_created` is the newest `created` the chunk stored (the next incremental
run starts there), `children_processed` counts objects stored through their parents (tax ids per
customer...) and `estimated_count` is the chunk's expected size, for an ETA.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE stripe._sync_obj_runs
            ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
            ADD COLUMN IF NOT EXISTS worker_key integer,
            ADD COLUMN IF NOT EXISTS max_created bigint,
            ADD COLUMN IF NOT EXISTS children_processed jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN IF NOT EXISTS estimated_count bigint
    """)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE stripe._sync_obj_runs
            DROP COLUMN IF EXISTS heartbeat_at,
            DROP COLUMN IF EXISTS worker_key,
            DROP COLUMN IF EXISTS max_created,
            DROP COLUMN IF EXISTS children_processed,
            DROP COLUMN IF EXISTS estimated_count
    """)
