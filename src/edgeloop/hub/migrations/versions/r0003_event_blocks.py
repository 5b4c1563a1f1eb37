"""Events entries keep their encoded columns once; fewer indexes on ``events``.

* ``event_blocks`` (node, epoch, seq, n, payload): the events entry as it arrived
  (``codec.encode_events`` version 2; on PostgreSQL stored without a second
  compression). Events ingested from it get ``events.idx``, their
  position in the entry, and leave ``features``, ``raw`` and ``raw_sensors`` NULL: they
  are read from the block. Ingest then writes one compressed value per entry instead of
  a JSON document and a frame per event.
* ``events.features`` and ``events.raw_sensors`` become nullable (rows stored before
  keep theirs).
* ``ix_events_node_t`` is dropped and ``ix_events_t`` becomes a BRIN index on
  PostgreSQL (a btree elsewhere): each btree on a text column cost about as much
  server time per inserted event as the row itself (``docs/hub.md``). A node filter
  goes through the time index. On PostgreSQL ``events.machine`` gets collation "C", so
  ``ix_events_machine_t`` compares bytes instead of calling the locale per comparison.

Downgrade: events stored from blocks lose their features, raw context and raw sensor
names (set to ``{}``, NULL and ``[]``): the older schema has nowhere to read them from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "event_blocks",
        sa.Column("node", sa.String(length=256), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("node", "epoch", "seq", name=op.f("pk_event_blocks")),
    )
    if _postgresql():
        # The payload is zstd-compressed already: no second compression (pglz tried it
        # on every value over 2 kB, ~2 us of server time per event), and rows stay in
        # the table up to a page (8160 bytes) before going to TOAST.
        op.execute("ALTER TABLE event_blocks ALTER COLUMN payload SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE event_blocks SET (toast_tuple_target = 8160)")
    op.drop_index("ix_events_node_t", table_name="events")
    op.drop_index("ix_events_t", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("idx", sa.Integer(), nullable=True))
        batch.alter_column("features", existing_type=sa.JSON(), nullable=True)
        batch.alter_column("raw_sensors", existing_type=sa.JSON(), nullable=True)
    if _postgresql():
        # Bytewise comparisons in ix_events_machine_t (rebuilt by the ALTER).
        op.alter_column(
            "events",
            "machine",
            type_=sa.String(length=256, collation="C"),
            existing_type=sa.String(length=256),
            existing_nullable=False,
        )
        op.create_index(
            "ix_events_t",
            "events",
            ["t_start_ns"],
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        )
    else:
        op.create_index("ix_events_t", "events", ["t_start_ns"])


def downgrade() -> None:
    op.drop_index("ix_events_t", table_name="events")
    if _postgresql():
        op.alter_column(
            "events",
            "machine",
            type_=sa.String(length=256),
            existing_type=sa.String(length=256, collation="C"),
            existing_nullable=False,
        )
    op.execute("UPDATE events SET features = '{}' WHERE features IS NULL")
    op.execute("UPDATE events SET raw_sensors = '[]' WHERE raw_sensors IS NULL")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("raw_sensors", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("features", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("idx")
    op.create_index("ix_events_t", "events", ["t_start_ns"])
    op.create_index("ix_events_node_t", "events", ["node", "t_start_ns"])
    op.drop_table("event_blocks")
