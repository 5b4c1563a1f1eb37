"""Baseline: the hub schema as it was when migrations were introduced.

Ledger ``received`` keyed on (node, epoch, seq), watermarks per (node, epoch) in
``incarnations``, data rows (events, summaries, raw frames) pointing at their ledger row,
dead letters. A database created by ``create_all`` before migrations existed matches this
revision and is stamped with it (``edgeloop.hub.migrate``).

This file is frozen: it must not import ``edgeloop.hub.schema``, which moves on with
later revisions.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = 256
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LEDGER_KEY = ["node", "epoch", "seq"]
LEDGER_REF = ["received.node", "received.epoch", "received.seq"]


def _name(column: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(column, sa.String(length=NAME), nullable=nullable)


def _big(column: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(column, sa.BigInteger(), nullable=nullable, autoincrement=False)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def _ledger_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(LEDGER_KEY, LEDGER_REF, name=op.f(f"fk_{table}_node_received"))


def upgrade() -> None:
    op.create_table(
        "nodes",
        _name("id"),
        sa.Column("tier", sa.String(length=64), nullable=True),
        _name("parent", nullable=True),
        _big("first_seen_ns"),
        _big("last_seen_ns"),
        _big("watermark"),
        sa.Column("status", sa.JSON(), nullable=False),
        _big("status_ns"),
        _big("batches"),
        _big("duplicates"),
        _big("epoch"),
        _big("unknown_upto_seq"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_table(
        "incarnations",
        _name("node"),
        _big("epoch"),
        _big("watermark"),
        _big("unknown_upto_seq"),
        _big("first_seen_ns"),
        _big("last_seen_ns"),
        _big("batches"),
        sa.ForeignKeyConstraint(["node"], ["nodes.id"], name=op.f("fk_incarnations_node_nodes")),
        sa.PrimaryKeyConstraint("node", "epoch", name=op.f("pk_incarnations")),
    )
    op.create_table(
        "received",
        _name("node"),
        _big("epoch"),
        _big("seq"),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _big("samples"),
        _big("bytes"),
        _big("received_ns"),
        sa.Column("rejected", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["node"], ["nodes.id"], name=op.f("fk_received_node_nodes")),
        sa.PrimaryKeyConstraint("node", "epoch", "seq", name=op.f("pk_received")),
    )
    op.create_table(
        "events",
        _id(),
        _name("node"),
        _big("seq"),
        _name("origin"),
        _name("machine"),
        _name("sensor"),
        sa.Column("severity", sa.String(length=16), nullable=False),
        _big("t_start_ns"),
        _big("t_end_ns"),
        _big("detected_ns"),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        _name("detector"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("raw_sensors", sa.JSON(), nullable=False),
        _big("epoch"),
        _ledger_fk("events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_machine_t", "events", ["machine", "t_start_ns"])
    op.create_index("ix_events_node_t", "events", ["node", "t_start_ns"])
    op.create_index("ix_events_t", "events", ["t_start_ns"])
    op.create_table(
        "raw_frames",
        _name("node"),
        _big("epoch"),
        _big("seq"),
        sa.Column("sensors", sa.JSON(), nullable=False),
        _big("n"),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        _ledger_fk("raw_frames"),
        sa.PrimaryKeyConstraint("node", "epoch", "seq", name=op.f("pk_raw_frames")),
    )
    op.create_table(
        "summaries",
        _id(),
        _name("node"),
        _big("seq"),
        _name("sensor"),
        _big("t0_ns"),
        _big("t1_ns"),
        _big("count"),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("std", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        _big("epoch"),
        _ledger_fk("summaries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_summaries")),
    )
    op.create_index("ix_summaries_node_sensor_t", "summaries", ["node", "sensor", "t0_ns"])
    op.create_index("ix_summaries_sensor_t", "summaries", ["sensor", "t0_ns"])
    op.create_index("ix_summaries_t", "summaries", ["t0_ns"])
    op.create_table(
        "dead_letters",
        _id(),
        _name("node", nullable=True),
        _big("seq", nullable=True),
        _big("received_ns"),
        sa.Column("reason", sa.String(length=64), nullable=False),
        _name("field"),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        _big("payload_bytes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_node", "dead_letters", ["node"])
    op.create_index("ix_dead_letters_t", "dead_letters", ["received_ns"])


def downgrade() -> None:
    for table in (
        "dead_letters",
        "summaries",
        "raw_frames",
        "events",
        "received",
        "incarnations",
        "nodes",
    ):
        op.drop_table(table)
