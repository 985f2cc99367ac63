from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs import services
from jobs.models import ApiToken


class Command(BaseCommand):
    help = "Issue an API token for a user and print it (only its hash is stored)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="What the token is for.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        token, key = ApiToken.issue(user, options["name"])
        services.audit("manage.py", "token.issue", target=f"{user.get_username()}:{token.name}")
        self.stdout.write(key)
