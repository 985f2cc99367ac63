"""The demo `make run` loads: teams, the standing cast, a demo repository and their credentials.

Idempotent: a second run reuses the users, passwords and tokens in demo-credentials.json.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from jobs import services, workspace
from jobs.models import Agent, ApiToken, Membership, Repository, Role, Team, hash_token

DEMO_REPO = Path(__file__).parent / "demo_repo"
# user: (team, role, staff)
CAST = {
    "alice": ("demo", Role.MEMBER, False),
    "bob": ("demo", Role.REVIEWER, False),
    "carol": ("acme", Role.MEMBER, False),
    "admin": ("demo", Role.ADMIN, True),
}


def credentials_path() -> Path:
    return settings.AGENTHUB_DATA_DIR / "demo-credentials.json"


def load_demo(url: str) -> dict[str, Any]:
    path = credentials_path()
    previous = json.loads(path.read_text()).get("users", {}) if path.exists() else {}
    users = {}
    with transaction.atomic():
        for name, (team_name, role, staff) in CAST.items():
            team, _ = Team.objects.get_or_create(name=team_name)
            users[name] = _user(name, team, role, staff, previous.get(name, {}))
    demo_team = Team.objects.get(name="demo")
    if not Repository.objects.filter(team=demo_team, name="demo").exists():
        services.register_repository("load_demo", demo_team, "demo", str(demo_source()))
    if not Agent.objects.filter(team=demo_team, name="docs").exists():
        Agent.objects.create(
            team=demo_team,
            name="docs",
            description="The shell agent, whose documentation-only results merge unreviewed.",
            command=Agent.objects.get(team=None, name="shell").command,
            silent_merge="docs/**\n*.md\n",
        )
    data = {"url": url, "users": users}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)
    return data


def _user(
    name: str, team: Team, role: str, staff: bool, previous: dict[str, str]
) -> dict[str, str]:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=name, defaults={"email": f"{name}@example.com"}
    )
    password = previous.get("password")
    if created or not password or not user.check_password(password):
        password = secrets.token_urlsafe(12)
        user.set_password(password)
    user.is_staff = user.is_superuser = staff
    user.save()
    Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    token = previous.get("token")
    if not token or not ApiToken.objects.filter(user=user, key_hash=hash_token(token)).exists():
        _, token = ApiToken.issue(user, "demo")
    return {"password": password, "token": token, "team": team.name, "role": role}


def demo_source() -> Path:
    """A working git repository with the demo code, made once under the data directory."""
    path = settings.AGENTHUB_DATA_DIR / "demo-source"
    if (path / ".git").exists():
        return path
    shutil.copytree(
        DEMO_REPO, path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    workspace.run_git(["init", "-q", "-b", "main", str(path)])
    git_dir, work_tree = path / ".git", path
    workspace.run_git(["add", "-A"], git_dir=git_dir, work_tree=work_tree)
    workspace.run_git(
        ["commit", "-q", "-m", "Demo calculator"], git_dir=git_dir, work_tree=work_tree
    )
    return path
