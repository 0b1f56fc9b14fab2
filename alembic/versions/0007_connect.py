"""Connect webhook endpoints: a managed endpoint may be a Connect one (`connect: true`, receiving the
connected accounts' events), beside the platform's own endpoint for the same URL.

`stripe._managed_webhooks` gets `connect` (false for every existing row) and its uniqueness becomes
(url, account_id, connect): one endpoint of each kind per URL and account.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE stripe._managed_webhooks ADD COLUMN IF NOT EXISTS connect boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE stripe._managed_webhooks DROP CONSTRAINT IF EXISTS _managed_webhooks_url_account_id_key")
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS _managed_webhooks_url_account_connect_idx "
               "ON stripe._managed_webhooks (url, account_id, connect)")


def downgrade() -> None:
    op.execute("DELETE FROM stripe._managed_webhooks WHERE connect")
    op.execute("DROP INDEX IF EXISTS stripe._managed_webhooks_url_account_connect_idx")
    op.execute("ALTER TABLE stripe._managed_webhooks DROP COLUMN IF EXISTS connect")
    op.execute("ALTER TABLE stripe._managed_webhooks ADD CONSTRAINT _managed_webhooks_url_account_id_key "
               "UNIQUE (url, account_id)")
