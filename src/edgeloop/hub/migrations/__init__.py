"""The hub's schema migrations (Alembic): ``env.py`` and one module per revision in
``versions/``. Run them with :func:`edgeloop.hub.migrate.upgrade` or
``edgeloop hub migrate --db URL``; no ``alembic.ini`` is needed.

A new revision (after changing ``edgeloop.hub.schema``): add
``versions/rNNNN_<what>.py`` (``script.py.mako`` is the template; alembic's
``produce_migrations`` against a database at head drafts the operations), then run
``tests/hub/test_migrations.py``, which checks on SQLite and PostgreSQL that the
migrated schema and the models agree. Revisions are frozen: they never import
``edgeloop.hub.schema``.
"""
