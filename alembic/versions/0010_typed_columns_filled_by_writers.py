"""Typed columns filled by the engine's statements instead of recomputed by PostgreSQL per statement.

A stored generated column costs PostgreSQL, on every statement that writes its table, the parsing and
planning of its expression (`ExecInitStoredGenerated`: `stringToNode` of `pg_attrdef.adbin`, then
`expression_planner`); that is per table and per statement, not per row. An invoice's 57 expressions
are 77 kB of node text, and a webhook batch of ten mixed events writes nine tables in one statement:
about a quarter of PostgreSQL's CPU per event went there. The columns stay, with the same values: the
engine's writers compute them in the statement itself (one plan, cached), from the expressions this
migration keeps in each column's comment (read by `stripe_sync_core.typed_columns`).

`id` and `deleted` stay generated (the primary key and the flag every reader filters on: cheap, and
right whoever writes), and so does every column of `accounts` (rarely written, often by hand).

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

KEPT_GENERATED = ('id', 'deleted')
KEPT_TABLES = ('accounts',)
PREFIX = "typed from _raw_data: "
"""Each column's comment keeps its expression (stripe_sync_core.typed_columns reads it): schema, not data,
so no truncation of the tables can lose it."""

_DROP_EXPRESSIONS = f"""
DO $$
DECLARE
    typed record;
BEGIN
    FOR typed IN
        SELECT c.relname AS table_name, a.attname AS column_name, pg_get_expr(d.adbin, d.adrelid) AS expression
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'stripe'::regnamespace AND c.relkind = 'r' AND a.attgenerated = 's'
          AND NOT a.attisdropped AND a.attname NOT IN {KEPT_GENERATED} AND c.relname NOT IN ('{KEPT_TABLES[0]}')
        ORDER BY c.relname, a.attnum
    LOOP
        EXECUTE format('COMMENT ON COLUMN stripe.%I.%I IS %L', typed.table_name, typed.column_name,
                       '{PREFIX}' || typed.expression);
        EXECUTE format('ALTER TABLE stripe.%I ALTER COLUMN %I DROP EXPRESSION', typed.table_name, typed.column_name);
    END LOOP;
END
$$
"""

# Downgrade: a column becomes generated again only by being added anew (PostgreSQL 15 has no
# `SET EXPRESSION`); its indexes go with it and are recreated from their definitions.
_RESTORE_EXPRESSIONS = f"""
DO $$
DECLARE
    typed record;
    index_definitions text[];
    definition text;
BEGIN
    FOR typed IN
        SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type,
               substr(d.description, length('{PREFIX}') + 1) AS expression, a.attrelid AS relation
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
        WHERE c.relnamespace = 'stripe'::regnamespace AND a.attgenerated = '' AND NOT a.attisdropped
          AND d.description LIKE '{PREFIX}%%'
        ORDER BY c.relname, a.attnum
    LOOP
        SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO index_definitions
        FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = typed.relation AND a.attname = typed.column_name;
        EXECUTE format('ALTER TABLE stripe.%I DROP COLUMN %I', typed.table_name, typed.column_name);
        EXECUTE format('ALTER TABLE stripe.%I ADD COLUMN %I %s GENERATED ALWAYS AS (%s) STORED',
                       typed.table_name, typed.column_name, typed.type, typed.expression);
        FOREACH definition IN ARRAY coalesce(index_definitions, '{{}}') LOOP
            EXECUTE definition;
        END LOOP;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(_DROP_EXPRESSIONS)


def downgrade() -> None:
    op.execute(_RESTORE_EXPRESSIONS)
