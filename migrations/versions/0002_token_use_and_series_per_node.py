"""Token last use, and an index for counting series per node.

The collector bounds how many series one node may create, which needs the series of a node
counted without a table scan; and ``wattledger token list`` shows when each token was last used,
so a token that nobody presents any more can be revoked with confidence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", recreate="never") as batch:
        batch.add_column(sa.Column("last_used_ns", sa.BigInteger))
    op.create_index("ix_series_node", "series", ["node"])


def downgrade() -> None:
    op.drop_index("ix_series_node", table_name="series")
    # SQLite 3.35+ drops a plain column in place; recreating the table would trip the foreign
    # key from series.token_id.
    with op.batch_alter_table("api_tokens", recreate="never") as batch:
        batch.drop_column("last_used_ns")
