"""Drift monitoring: ``drift_state``, ``drift_assessments``, ``drift_triggers``.

The drift service's streaks, its judgement of each period per model version and scope,
and the retraining triggers it emitted (see ``edgeloop.hub.drift_tables``). Downgrade
drops the three tables and what they hold (the sketches stay in ``node_documents``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "drift_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_period", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_drift_state")),
    )
    op.create_table(
        "drift_assessments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=256), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=8), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("drifted", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("judged_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_assessments")),
        sa.UniqueConstraint("version", "period", "scope", name="uq_drift_assessments"),
    )
    op.create_index("ix_drift_assessments_period", "drift_assessments", ["period"])
    op.create_table(
        "drift_triggers",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=256), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_triggers")),
        sa.UniqueConstraint("version", "period", "scope", name="uq_drift_triggers"),
    )


def downgrade() -> None:
    op.drop_table("drift_triggers")
    op.drop_index("ix_drift_assessments_period", table_name="drift_assessments")
    op.drop_table("drift_assessments")
    op.drop_table("drift_state")
