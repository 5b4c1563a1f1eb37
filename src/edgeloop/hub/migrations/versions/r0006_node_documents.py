"""Document entries: ``node_documents``.

Nodes send small JSON documents beside their telemetry, through the same outbox and
ledger: shadow measurements, drift sketches, curated samples (``edgeloop.hub.documents``).
Each is stored as it arrived, keyed like its ledger row, with the document's own time
``t_ns`` indexed with its kind.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_documents",
        sa.Column("node", sa.String(length=256), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("node", "epoch", "seq", name=op.f("pk_node_documents")),
    )
    op.create_index("ix_node_documents_kind_t", "node_documents", ["kind", "t_ns"])


def downgrade() -> None:
    op.drop_index("ix_node_documents_kind_t", table_name="node_documents")
    op.drop_table("node_documents")
