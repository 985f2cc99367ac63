"""The audit trail's writers: one chained entry per state change or person's action, written in
the caller's transaction (see jobs.audit_chain for the hash and `manage.py verify_audit`)."""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError, transaction

from jobs import workspace
from jobs.models import AuditEntry, AuditHead, Job, Team

REDACTED_FIELDS = frozenset({"secrets", "credentials", "key_hash", "password"})
# URLs whose credentials, if any were written into them, are hidden.
URL_FIELDS = frozenset({"push_url", "source"})


def audit(
    actor: Any,
    action: str,
    *,
    team: Team | None = None,
    job: Job | None = None,
    target: str = "",
    before: str = "",
    after: str = "",
    **data: Any,
) -> AuditEntry:
    """Append one entry to the audit chain, in the caller's transaction (see append)."""
    entry = audit_entry(
        actor, action, team=team, job=job, target=target, before=before, after=after, **data
    )
    append([entry])
    return entry


def audit_entry(
    actor: Any,
    action: str,
    *,
    team: Team | None = None,
    job: Job | None = None,
    target: str = "",
    before: str = "",
    after: str = "",
    **data: Any,
) -> AuditEntry:
    """An entry not yet in the chain, for append()."""
    is_user = actor is not None and getattr(actor, "pk", None) is not None
    return AuditEntry(
        actor=actor if is_user else None,
        actor_name=actor.get_username() if is_user else str(actor or "system"),
        action=action,
        team=team if team is not None else (job.team if job else None),
        job=job,
        target=target or (job.public_id if job else ""),
        before=before,
        after=after,
        data=json.loads(json.dumps(data, default=str)),
    )


def append(entries: list[AuditEntry]) -> None:
    """Chain `entries`, in order, onto the audit trail in the caller's transaction: one insert
    and one move of the head however many there are.

    The chain head is row-locked until that transaction ends, so entries are chained in commit
    order. To keep lock order the same everywhere (rows of teams, jobs and attempts first, the
    head last), call this after the transaction has locked whatever else it needs."""
    if not entries:
        return
    # No savepoint: entries that cannot be written fail the caller's whole transaction.
    with transaction.atomic(savepoint=False):
        head = _audit_head()
        seq, prev = head.seq, head.hash
        for entry in entries:
            seq += 1
            entry.seq, entry.prev_hash = seq, prev
            entry.hash = prev = entry.compute_hash()
        AuditEntry.objects.bulk_create(entries)
        AuditHead.objects.filter(pk=head.pk).update(seq=seq, hash=prev)


def _audit_head() -> AuditHead:
    try:
        return AuditHead.objects.select_for_update().get(pk=1)
    except AuditHead.DoesNotExist:
        pass
    # An empty database (or one a test flushed): start the chain; a concurrent starter wins.
    try:
        with transaction.atomic():
            AuditHead.objects.create(pk=1)
    except IntegrityError:
        pass
    return AuditHead.objects.select_for_update().get(pk=1)


def audit_change(
    actor: Any,
    verb: str,
    obj: Any,
    *,
    changes: dict[str, tuple[Any, Any]] | None = None,
    **data: Any,
) -> AuditEntry:
    """One entry for a person's change to a team, membership, repository, agent or token.

    The action is `<model>.<verb>` (e.g. `agent.update`, `membership.delete`); `changes` maps a
    field to its (old, new) values. Secret values are never written: only that they changed and,
    for the agent's secrets, which names it has."""
    if changes:
        data["changes"] = {
            name: _redacted(name, old, new) for name, (old, new) in sorted(changes.items())
        }
    team = obj if isinstance(obj, Team) else getattr(obj, "team", None)
    return audit(
        actor,
        f"{obj._meta.model_name}.{verb}",
        team=team,
        target=str(obj)[:200],
        **data,
    )


def _redacted(name: str, old: Any, new: Any) -> list[Any]:
    if name in URL_FIELDS:
        return [workspace.redacted(str(old or "")), workspace.redacted(str(new or ""))]
    if name not in REDACTED_FIELDS:
        return [_plain(old), _plain(new)]
    if isinstance(old, dict) and isinstance(new, dict):
        return [sorted(old), sorted(new)]  # the names only
    return ["(hidden)", "(hidden)"]


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field value (model instances by name, others as text)."""
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return str(value)
