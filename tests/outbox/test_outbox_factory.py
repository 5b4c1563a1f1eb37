"""open_outbox: URL to store, and the package's public API."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgeloop.outbox
from edgeloop.errors import ConfigError
from edgeloop.outbox import MemoryOutbox, SqliteOutbox, open_outbox
from edgeloop.outbox.base import NewEntry, Priority


def test_memory_url() -> None:
    box = open_outbox("memory://", budget_bytes=10)
    assert isinstance(box, MemoryOutbox)
    assert box.budget_bytes == 10


def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    box = open_outbox("sqlite:///sub.db")
    try:
        assert isinstance(box, SqliteOutbox)
        box.append([NewEntry(Priority.RAW, "raw", b"x")])
    finally:
        box.close()
    assert (tmp_path / "sub.db").exists()


def test_sqlite_absolute_path_and_options(tmp_path: Path) -> None:
    target = tmp_path / "abs.db"
    box = open_outbox(f"sqlite:///{target}?synchronous=full", budget_bytes=1 << 20)
    try:
        assert isinstance(box, SqliteOutbox)
        assert (box.path, box.synchronous, box.budget_bytes) == (target, "FULL", 1 << 20)
    finally:
        box.close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://x", "not supported"),
        ("memory:", "not supported"),
        ("sqlite:///", "no file path"),
        ("sqlite:///x.db?journal=off", "unknown option"),
        ("sqlite:///x.db?synchronous=OFF", "synchronous"),
    ],
)
def test_bad_urls_are_config_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        open_outbox(url)


def test_bad_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="budget_bytes"):
        open_outbox("memory://", budget_bytes=0)


def test_public_api() -> None:
    assert edgeloop.outbox.__all__ == sorted(edgeloop.outbox.__all__)
    assert set(edgeloop.outbox.__all__) == {
        "Entry",
        "EvictionStats",
        "MemoryOutbox",
        "NewEntry",
        "OutboxStats",
        "OutboxStore",
        "Priority",
        "SqliteOutbox",
        "open_outbox",
    }
    for name in edgeloop.outbox.__all__:
        assert hasattr(edgeloop.outbox, name)
