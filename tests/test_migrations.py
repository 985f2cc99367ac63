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


@pytest.mark.django_db(transaction=True)
def test_agents_plaintext_secrets_are_sealed_by_the_migration_and_read_back():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from jobs.models import Agent

    executor = MigrationExecutor(connection)
    executor.migrate([("jobs", "0012_budgets")])
    old = executor.loader.project_state([("jobs", "0012_budgets")]).apps
    team = old.get_model("jobs", "Team").objects.create(name="sealing")
    old.get_model("jobs", "Agent").objects.create(
        team=team, name="keeper", command="true", secrets={"API_KEY": "plain-value-1234"}
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM jobs_agent WHERE name = %s", ["keeper"])
        (stored,) = cursor.fetchone()
    assert "plain-value-1234" not in stored and stored.startswith("gAAAA")  # a Fernet token
    assert Agent.objects.get(name="keeper").secrets == {"API_KEY": "plain-value-1234"}
