"""The request budget shared by every process of one Stripe account: token buckets in a table.

One row per (scope, bucket): `scope` names the account and mode, `bucket` is `*` for the account's
global limit or an endpoint (`GET /v1/customers/{id}`) for Stripe's limit per endpoint. A grant is one
call of `stripe._take_request_tokens`: it locks the scope's global row (so every grant of an account is
serialised there and the endpoint rows behind it never deadlock), refills by the caller's rate on the
server's clock, takes up to the wanted tokens per endpoint and returns what it granted and how long to
wait for the next token. Bulk calls take only what lies above a reserve, which is the interactive lane's.

No row holds a reservation: a token taken is spent, a lock lasts one statement (a process that dies
frees it with its connection, and `lock_timeout` bounds a wait), so nothing stays blocked. The table is
UNLOGGED: a grant writes no WAL, and after a crash the buckets simply start full.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLE = """
CREATE UNLOGGED TABLE IF NOT EXISTS stripe._request_budget (
    scope text NOT NULL,
    bucket text NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (scope, bucket)
)
"""

_TAKE = """
CREATE OR REPLACE FUNCTION stripe._take_request_tokens(
    p_scope text, p_bulk boolean,
    p_rate double precision, p_capacity double precision, p_reserve double precision,
    p_endpoint_rate double precision, p_endpoint_capacity double precision, p_endpoint_reserve double precision,
    p_endpoints text[], p_wanted integer[],
    OUT granted integer[], OUT wait_seconds double precision)
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    keep double precision := CASE WHEN p_bulk THEN p_reserve ELSE 0 END;
    endpoint_keep double precision := CASE WHEN p_bulk THEN p_endpoint_reserve ELSE 0 END;
    now_at timestamptz;
    stored double precision;
    stored_at timestamptz;
    available double precision;
    endpoint_available double precision;
    global_wait double precision;
    endpoint_waits double precision[] := '{}';
    k integer;
    i integer;
BEGIN
    SELECT tokens, refilled_at INTO stored, stored_at FROM stripe._request_budget
        WHERE scope = p_scope AND bucket = '*' FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO stripe._request_budget VALUES (p_scope, '*', p_capacity, clock_timestamp())
            ON CONFLICT (scope, bucket) DO NOTHING;
        SELECT tokens, refilled_at INTO stored, stored_at FROM stripe._request_budget
            WHERE scope = p_scope AND bucket = '*' FOR UPDATE;
    END IF;
    now_at := clock_timestamp();  -- after the lock: the time the previous holder wrote is behind us
    available := least(p_capacity, stored + greatest(0, extract(epoch FROM now_at - stored_at)::float8) * p_rate);
    granted := '{}';
    FOR i IN 1 .. coalesce(array_length(p_endpoints, 1), 0) LOOP
        k := greatest(0, least(p_wanted[i], floor(available - keep)::integer));
        endpoint_waits := endpoint_waits || 0::float8;
        IF k > 0 AND p_endpoint_rate IS NOT NULL AND p_endpoints[i] IS NOT NULL THEN
            SELECT tokens, refilled_at INTO stored, stored_at FROM stripe._request_budget
                WHERE scope = p_scope AND bucket = p_endpoints[i] FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO stripe._request_budget VALUES (p_scope, p_endpoints[i], p_endpoint_capacity, now_at)
                    ON CONFLICT (scope, bucket) DO NOTHING;
                SELECT tokens, refilled_at INTO stored, stored_at FROM stripe._request_budget
                    WHERE scope = p_scope AND bucket = p_endpoints[i] FOR UPDATE;
            END IF;
            endpoint_available := least(p_endpoint_capacity,
                stored + greatest(0, extract(epoch FROM now_at - stored_at)::float8) * p_endpoint_rate);
            k := greatest(0, least(k, floor(endpoint_available - endpoint_keep)::integer));
            UPDATE stripe._request_budget SET tokens = endpoint_available - k,
                refilled_at = greatest(refilled_at, now_at)
                WHERE scope = p_scope AND bucket = p_endpoints[i];
            endpoint_waits[i] := greatest(0, (endpoint_keep + 1 - (endpoint_available - k)) / p_endpoint_rate);
        END IF;
        available := available - k;
        granted := granted || k;
    END LOOP;
    UPDATE stripe._request_budget SET tokens = available, refilled_at = greatest(refilled_at, now_at)
        WHERE scope = p_scope AND bucket = '*';
    global_wait := greatest(0, (keep + 1 - available) / p_rate);
    FOR i IN 1 .. coalesce(array_length(p_endpoints, 1), 0) LOOP
        IF granted[i] < p_wanted[i] THEN  -- the soonest any unserved endpoint may be served
            wait_seconds := least(wait_seconds, greatest(global_wait, endpoint_waits[i]));
        END IF;
    END LOOP;
    wait_seconds := coalesce(wait_seconds, 0);
END
$$
"""


def upgrade() -> None:
    op.execute(_TABLE)
    op.execute(_TAKE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS stripe._take_request_tokens")
    op.execute("DROP TABLE IF EXISTS stripe._request_budget")
