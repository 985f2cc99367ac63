from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.demo import credentials_path, load_demo


class Command(BaseCommand):
    help = "Create the demo teams, users, tokens and repository (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://localhost:8000/")

    def handle(self, *args: Any, **options: Any) -> None:
        data = load_demo(options["url"])
        for name, user in data["users"].items():
            self.stdout.write(
                f"  {name:6} {user['role']:9} team {user['team']:5} password {user['password']}"
            )
        self.stdout.write(f"Credentials and API tokens: {credentials_path()}")
