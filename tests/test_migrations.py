"""The migrations: every run builds its test database with them from nothing (pytest-django
migrates it), on PostgreSQL in the whole suite and on SQLite in `-m database`; and they hold
every change made to the models."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.django_db, pytest.mark.database]


def test_the_migrations_hold_every_change_to_the_models():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit:
        pytest.fail(f"models changed without a migration:\n{out.getvalue()}")
