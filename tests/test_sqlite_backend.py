"""agenthub.sqlite: a transaction waits for SQLite's write lock by polling, gets it as soon as
the holder commits, and fails naming the lock once the configured timeout has passed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import OperationalError
from django.db.utils import ConnectionHandler


def connections_to(path: Path, timeout: float) -> ConnectionHandler:
    options = {"timeout": timeout, "transaction_mode": "IMMEDIATE"}
    return ConnectionHandler(
        {"default": {"ENGINE": "agenthub.sqlite", "NAME": str(path), "OPTIONS": options}}
    )


def hold_the_write_lock(
    handler: ConnectionHandler, taken: threading.Event, release: threading.Event
):
    def hold() -> None:
        holder = handler["default"]  # this thread's own connection
        holder._start_transaction_under_autocommit()
        with holder.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES ('holder')")
        taken.set()
        release.wait(10)
        with holder.cursor() as cursor:
            cursor.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return thread


@pytest.fixture(autouse=True)
def _own_database(django_db_blocker):
    # A scratch database file of the test's own, not the test database pytest-django guards.
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite3"
    handler = connections_to(path, 1)
    with handler["default"].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE t (who TEXT)")
    handler["default"].close()
    return path


def test_a_transaction_waits_for_the_write_lock_and_gets_it_once_released(table):
    handler = connections_to(table, 10)
    taken, release = threading.Event(), threading.Event()
    holder = hold_the_write_lock(handler, taken, release)
    threading.Timer(0.2, release.set).start()
    waiter = handler["default"]
    waiter._start_transaction_under_autocommit()  # blocks until the holder commits
    with waiter.cursor() as cursor:
        cursor.execute("SELECT who FROM t")
        assert cursor.fetchall() == [("holder",)]  # the holder had committed
        cursor.execute("INSERT INTO t VALUES ('waiter')")
        cursor.execute("COMMIT")
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone() == (10_000,)  # statements outside transactions keep it
    holder.join()
    waiter.close()


def test_it_gives_up_after_the_timeout_naming_the_lock(table):
    handler = connections_to(table, 0.3)
    taken, release = threading.Event(), threading.Event()
    holder = hold_the_write_lock(handler, taken, release)
    waiter = handler["default"]
    try:
        with pytest.raises(OperationalError, match="locked"):
            waiter._start_transaction_under_autocommit()
    finally:
        release.set()
        holder.join()
        waiter.close()
