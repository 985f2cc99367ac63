"""Registering a team's repository: AgentHub's own bare copy (the store) of a path or URL."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import access, git_auth, remotes, workspace
from jobs.errors import BadInput
from jobs.models import Repository, Team
from jobs.services.audit import audit


def register_repository(
    actor: Any,
    team: Team,
    name: str,
    source: str,
    *,
    push_url: str = "",
    setup_script: str = "",
    credentials: dict[str, str] | None = None,
) -> Repository:
    if Repository.objects.filter(team=team, name=name).exists():
        raise BadInput(f"Team {team.name} already has a repository named {name!r}.", field="name")
    source = _normalise_source(source)
    if problem := git_auth.problem(credentials or {}):
        raise BadInput(problem, field="credentials")
    store = settings.AGENTHUB_DATA_DIR / "stores" / team.name / f"{name}-{secrets.token_hex(4)}.git"
    store.parent.mkdir(parents=True, exist_ok=True)
    try:
        remotes.create_store(source, store, auth=auth_of(credentials or {}))
    except workspace.GitError as exc:
        raise BadInput(f"Could not copy {source!r}: {exc}", field="source") from exc
    with transaction.atomic():
        repo = Repository.objects.create(
            team=team,
            name=name,
            source=source,
            push_url=push_url,
            setup_script=setup_script,
            credentials=credentials or {},
            store_path=str(store),
            default_branch=workspace.default_branch(store),
            last_synced_at=timezone.now(),
        )
        audit(
            actor,
            "repository.register",
            team=team,
            target=name,
            source=workspace.redacted(source),
        )
    return repo


def auth_of(credentials: Any) -> git_auth.Auth:
    """How the host's git authenticates for a repository: its stored credentials, SSH host keys
    trusted on first use in the data directory, HTTPS checked against AGENTHUB_CA_BUNDLE."""
    return git_auth.of(
        credentials,
        known_hosts=str(settings.AGENTHUB_DATA_DIR / "ssh_known_hosts"),
        ca_bundle=settings.AGENTHUB_CA_BUNDLE,
    )


def rebuild_environment(actor: Any, repository: Repository) -> Repository:
    """The next attempt sets the repository's environment up afresh (jobs/environments.py: the
    generation is part of its key); retention removes the old one once unused."""
    with transaction.atomic():
        Repository.objects.filter(pk=repository.pk).update(
            environment_generation=F("environment_generation") + 1
        )
        repository.refresh_from_db(fields=["environment_generation"])
        audit(
            actor,
            "repository.rebuild_environment",
            team=repository.team,
            target=repository.name,
            generation=repository.environment_generation,
        )
    return repository


def _normalise_source(source: str) -> str:
    source = source.strip()
    if not source or source.startswith("-"):
        raise BadInput("Give a local path or a clone URL.", field="source")
    if "://" in source or ":" in source.split("/")[0]:
        return source
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise BadInput(f"No such path: {path}", field="source")
    return str(path)


def find_repository(user: Any, name: str) -> Repository:
    """One of the user's teams' repositories by name (`team/name` when several have it)."""
    if not name:
        raise BadInput("Name the repository to work on.", field="repo")
    team_name, _, repo_name = name.rpartition("/")
    # Its secrets and credentials stay sealed (and unread) until something asks for them.
    found = (
        Repository.objects.filter(team__in=access.teams(user), name=repo_name)
        .select_related("team")
        .defer("secrets", "credentials")
    )
    if team_name:
        found = found.filter(team__name=team_name)
    matches = list(found[:2])
    if not matches:
        raise BadInput(f"Unknown repository {name!r} in your teams.", field="repo")
    if len(matches) > 1:
        raise BadInput(
            f"Several of your teams have {name!r}; write it as team/{repo_name}.", field="repo"
        )
    return matches[0]


def resolve_ref(repository: Repository, ref: str) -> workspace.Ref:
    """The commit a branch, tag or commit names in the store (read without a subprocess), as a
    field error of `base_ref` when there is none."""
    try:
        return workspace.read_ref(Path(repository.store_path), ref)
    except workspace.InvalidRef as exc:
        raise BadInput(str(exc), field="base_ref") from exc
    except workspace.RefNotFound:
        raise BadInput(
            f"No branch, tag or commit {ref!r} in {repository.name}.", field="base_ref"
        ) from None
