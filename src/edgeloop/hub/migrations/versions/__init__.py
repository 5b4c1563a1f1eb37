"""Revisions of the hub schema, oldest first (Alembic skips this file)."""
