"""PostgreSQL for the tests: re-exported from :mod:`edgeloop.chaos.services` (one copy,
shared with ``edgeloop chaos``); see its docstring for where the server comes from."""

from __future__ import annotations

from edgeloop.chaos.services import (
    LOCAL,
    fresh_database,
    pg_server,
    schema_url,
)
from edgeloop.chaos.services import (
    PG_INSTALL_HINT as INSTALL_HINT,
)

__all__ = ["INSTALL_HINT", "LOCAL", "fresh_database", "pg_server", "schema_url"]
