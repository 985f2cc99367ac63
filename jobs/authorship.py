"""Who did what, in plain `git log`: the messages of result and merge commits and the identity
that commits them.

A result commit's subject is the job's title, its body the first lines of what the attempt was
asked, then trailers: `Co-authored-by:` the submitter, `AgentHub-Job:`, `AgentHub-Agent:`.
What lands on the target branch names every approver (`Approved-by:`): in the merge commit, or,
on a fast-forward, in the result commit rewritten with them (same tree and parents, so the
review stays bound to its diff). Git notes would not do: they are neither pushed nor shown by
default. The committer is AGENTHUB_GIT_NAME <AGENTHUB_GIT_EMAIL>.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings

BODY_LINES = 10
BODY_CHARS = 1000


def identity() -> tuple[str, str]:
    return settings.AGENTHUB_GIT_NAME, settings.AGENTHUB_GIT_EMAIL


def person(user: Any) -> str:
    """`Name <email>` for a trailer; a user without an email gets one at the committer's host,
    so the line still parses as an identity."""
    name = (user.get_full_name() or user.get_username()).strip()
    email = user.email or f"{user.get_username()}@{settings.AGENTHUB_GIT_EMAIL.partition('@')[2]}"
    return f"{_line(name)} <{_line(email)}>"


def result_message(job: Any, attempt: Any) -> str:
    asked = (attempt.instruction or job.prompt).strip().splitlines()
    body = "\n".join(asked[:BODY_LINES])[:BODY_CHARS]
    if len(asked) > BODY_LINES or len(body) == BODY_CHARS:
        body += "\n[…]"
    trailers = [
        f"Co-authored-by: {person(job.submitter)}",
        f"AgentHub-Job: {job.public_id} (attempt {attempt.number})",
        f"AgentHub-Agent: {_line(job.agent.name)}",
    ]
    return f"{_line(job.title) or job.public_id}\n\n{body}\n\n" + "\n".join(trailers) + "\n"


def approved_by(approvers: Iterable[Any]) -> list[str]:
    return [f"Approved-by: {person(user)}" for user in approvers]


def _line(text: str) -> str:
    """One line, with nothing a trailer or an identity could be forged with."""
    return " ".join(text.replace("<", "").replace(">", "").split())
