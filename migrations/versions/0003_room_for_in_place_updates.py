"""Leave room in the pages of the tables every batch updates (PostgreSQL).

Each batch rewrites the state of every series it touches (``series.last_ns``, ``last_value``)
and adds to the hour rows of ``rollup_hourly``. With full pages, PostgreSQL writes each new row
version to another page and updates every index of the table; with free space on the page it
can update in place (a heap-only tuple), touching no index. On the ingest benchmark this cut the
series update from about 1.6 s to 0.5 s per 62,000 points. SQLite rewrites rows in place anyway,
so nothing changes there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FILLFACTORS = {"series": 50, "rollup_hourly": 70}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILLFACTORS.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent:d})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILLFACTORS:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
