"""The control plane: model registry events, artifacts, desired and actual state, rollouts.

* ``model_events``: the registry's append-only event log (``ModelRegistry.replay``).
* ``artifacts`` and ``artifact_chunks``: content-addressed model bytes in chunks.
* ``fleet_groups``, ``fleet_nodes``: desired state per node group; node → group, pins.
* ``node_actual``: the last actual state each node reported.
* ``rollouts``: rollout snapshots.

See ``edgeloop.hub.model_tables``. Downgrade drops the tables and what they hold.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME = 256
VERSION = 128
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_events",
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=VERSION), nullable=False),
        sa.Column("actor", sa.String(length=NAME), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("alias", sa.String(length=VERSION), nullable=True),
        sa.Column("previous", sa.String(length=VERSION), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_model_events")),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column("artifact", sa.String(length=80), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact"], ["artifacts.id"], name=op.f("fk_artifact_chunks_artifact_artifacts")
        ),
        sa.PrimaryKeyConstraint("artifact", "idx", name=op.f("pk_artifact_chunks")),
    )
    op.create_table(
        "fleet_groups",
        sa.Column("name", sa.String(length=NAME), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("act", sa.String(length=VERSION), nullable=False),
        sa.Column("shadow", sa.String(length=VERSION), nullable=True),
        sa.Column("pipeline", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=NAME), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_fleet_groups")),
    )
    op.create_table(
        "fleet_nodes",
        sa.Column("node", sa.String(length=NAME), nullable=False),
        sa.Column("group_name", sa.String(length=NAME), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("pin_act", sa.String(length=VERSION), nullable=True),
        sa.Column("pin_shadow", sa.String(length=VERSION), nullable=True),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_fleet_nodes")),
    )
    op.create_table(
        "node_actual",
        sa.Column("node", sa.String(length=NAME), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("active", sa.JSON(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=True),
        sa.Column("pipeline_digest", sa.String(length=64), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("reported_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_node_actual")),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("champion", sa.String(length=VERSION), nullable=False),
        sa.Column("challenger", sa.String(length=VERSION), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decisions", sa.BigInteger(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("started_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )


def downgrade() -> None:
    for table in (
        "rollouts",
        "node_actual",
        "fleet_nodes",
        "fleet_groups",
        "artifact_chunks",
        "artifacts",
        "model_events",
    ):
        op.drop_table(table)
