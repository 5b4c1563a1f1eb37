"""The ledger records its commit order.

``received.commit_order``: on PostgreSQL a value of the sequence
``received_commit_order``, drawn by the ``INSERT`` that admits the entry. Ingest admits
a node's entries while it holds the node's row lock (``SELECT ... FOR UPDATE``) until
its commit, so per node the values follow the commit order, across hub replicas too:
"was seq n committed after a higher one?" becomes a query (the chaos suite's order
violations, ``docs/chaos.md``). Unlike the hub's receive clock (``received_ns``, taken
before the transaction), it cannot be stamped by one replica and committed after
another's. On SQLite (one writer) the column stays NULL; the rowid is the insert order
there. Existing rows get values in no particular order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEQUENCE = "received_commit_order"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE {SEQUENCE}")
        op.add_column(
            "received",
            sa.Column(
                "commit_order",
                sa.BigInteger(),
                server_default=sa.text(f"nextval('{SEQUENCE}')"),
                nullable=True,
            ),
        )
        # Dropping the column (downgrade) drops the sequence with it.
        op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY received.commit_order")
    else:
        op.add_column("received", sa.Column("commit_order", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("received") as batch:
        batch.drop_column("commit_order")
