from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs import services
from jobs.errors import ServiceError
from jobs.models import Team
from jobs.validation import command_problem


class Command(BaseCommand):
    help = "Register a git repository (local path or clone URL) for a team; AgentHub keeps a copy."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("source", help="Local path or clone URL.")
        parser.add_argument("--team", required=True)
        parser.add_argument("--name", required=True, help="The name jobs use for it.")
        parser.add_argument("--push-url", default="", help="Where merged results are pushed.")
        parser.add_argument(
            "--setup-file",
            help="A bash script that sets up its environment (e.g. pip install -e '.[test]')",
        )

        auth = parser.add_mutually_exclusive_group()
        auth.add_argument(
            "--token-file", help="a file holding an HTTPS token to fetch and push with"
        )
        auth.add_argument(
            "--ssh-key-file", help="a file holding an SSH private key to fetch and push with"
        )
        parser.add_argument("--username", default="", help="the token's user name, if it needs one")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"No team named {options['team']!r}.")
        setup = ""
        if options["setup_file"]:
            setup = _read(options["setup_file"])
            if problem := command_problem(setup):
                raise CommandError(f"{options['setup_file']}: {problem}")
        credentials = {}
        if options.get("token_file"):
            token = _read(options["token_file"]).strip()
            credentials = {
                "token": token,
                **({"username": options["username"]} if options.get("username") else {}),
            }
        elif options.get("ssh_key_file"):
            credentials = {"ssh_key": _read(options["ssh_key_file"])}
        try:
            repo = services.register_repository(
                "manage.py",
                team,
                options["name"],
                options["source"],
                push_url=options["push_url"],
                setup_script=setup,
                credentials=credentials,
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"Registered {repo} (default branch {repo.default_branch}) at {repo.store_path}"
        )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
