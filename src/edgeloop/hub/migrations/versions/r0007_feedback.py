"""Feedback and retraining: ``event_labels``, ``retrain_runs``.

Operators label events as true or false alarms (every label kept, with who and when);
each retraining run is recorded with its reason, actor, outcome, version and metrics.
See ``edgeloop.hub.feedback_tables``. Downgrade drops both tables and what they hold.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_labels",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_labels")),
    )
    op.create_index("ix_event_labels_event", "event_labels", ["event_id", "id"])
    op.create_table(
        "retrain_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=True),
        sa.Column("parent", sa.String(length=128), nullable=True),
        sa.Column("rollout_id", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_ns", sa.BigInteger(), nullable=False),
        sa.Column("finished_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_runs")),
    )


def downgrade() -> None:
    op.drop_table("retrain_runs")
    op.drop_index("ix_event_labels_event", table_name="event_labels")
    op.drop_table("event_labels")
