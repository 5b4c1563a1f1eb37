"""Data rows no longer reference the ledger by foreign key.

``events``, ``summaries`` and ``raw_frames`` pointed at their ``received`` row with a
foreign key on (node, epoch, seq). PostgreSQL checks such a key with a trigger per
inserted row; on summary-heavy batches that check was half the server's insert time
(measured with ``benchmarks/hub_ingest.py``, see ``docs/hub.md``). The guarantee it
gave is kept by construction: the ingest transaction inserts data rows only for the
entries its own ``INSERT INTO received ... RETURNING seq`` admitted, in the same
transaction. The ledger's own keys (``received`` and ``incarnations`` to ``nodes``,
checked once per entry, not per row) stay.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("events", "summaries", "raw_frames")


def upgrade() -> None:
    for table in TABLES:
        # SQLite cannot drop a constraint: batch mode rebuilds the table (a plain ALTER
        # on PostgreSQL).
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_node_received", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_node_received",
                "received",
                ["node", "epoch", "seq"],
                ["node", "epoch", "seq"],
            )
