"""Checks of a person's input that several services share: URLs, an instruction's size, and what
an agent's configuration may say (its command, image, secrets' names, silent-merge patterns)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pathspec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from jobs.errors import BadInput, TooLarge


def check_http_url(url: str, field: str) -> None:
    """An http(s) URL, or BadInput naming the field."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise BadInput(f"{field} must be an http(s) URL, not {url!r}.", field=field) from None


def check_instruction_size(text: str, field: str) -> None:
    """At most AGENTHUB_MAX_PROMPT_BYTES, or TooLarge naming the field."""
    size, limit = len(text.encode()), settings.AGENTHUB_MAX_PROMPT_BYTES
    if size > limit:
        raise TooLarge(f"The {field} is {size} bytes; the limit is {limit} bytes.", field=field)


# A docker image reference: [registry[:port]/]path[:tag][@digest], lowercase path components.
IMAGE_REFERENCE = re.compile(
    # A registry is a first component with a dot or a port, or localhost.
    r"(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9-]+(?=:[0-9]))(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What the runner puts into the agent's environment (jobs/runner.py): always (AGENTHUB_REPORT:
# jobs/sandbox/tools.py), for a follow-up of a review, and for an AI agent (a provider) or one
# with egress (egress/wiring.py).
AGENT_VARIABLES = frozenset(
    {
        "AGENTHUB_JOB_ID",
        "AGENTHUB_ATTEMPT",
        "AGENTHUB_PROMPT",
        "AGENTHUB_PROMPT_FILE",
        "AGENTHUB_REVIEW_FILE",
        "AGENTHUB_MODEL",
        "AGENTHUB_MODEL_TOKEN",
        "AGENTHUB_MODEL_URL",
        "AGENTHUB_GATEWAY_URL",
        "AGENTHUB_REPORT",
    }
)
_AGENTHUB_VARIABLE = re.compile(r"\$\{?(AGENTHUB_[A-Za-z0-9_]*)")


def silent_merge_problem(text: str) -> str:
    """Why a silent-merge policy is not a list of patterns, or "" when it is one."""
    for number, line in enumerate(text.splitlines(), 1):
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        if "\0" in pattern or pattern.lstrip("!/") in ("", "*", "**", "**/*", "**/**"):
            return (
                f"Line {number}: {pattern!r} would match every path, so nothing would be "
                "reviewed; name what may merge unreviewed, e.g. docs/** or *.md."
            )
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError as exc:
            return f"Line {number}: {pattern!r} is not a path pattern ({exc})."
    return ""


def command_problem(command: str) -> str:
    """Why an agent's command cannot be run as written, or "" when it can.

    The command is a bash script; `bash -n` parses it without running anything. A reference to
    an AGENTHUB_ variable the runner does not set is a typo that would silently expand to ""."""
    if not command.strip():
        return "The command is empty."
    if "\0" in command:
        return "The command contains a NUL character."
    unknown = sorted(set(_AGENTHUB_VARIABLE.findall(command)) - AGENT_VARIABLES)
    if unknown:
        return (
            f"Unknown variable {', '.join('$' + v for v in unknown)}: the agent gets "
            f"{', '.join('$' + v for v in sorted(AGENT_VARIABLES))}."
        )
    parsed = subprocess.run(
        ["bash", "-n", "-c", command, "agent"],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        cwd="/",
    )
    if parsed.returncode != 0:
        message = " ".join(parsed.stderr.split()) or "bash could not parse it"
        return f"The command is not a valid bash script: {message}"
    return ""


def secrets_problem(secrets: Any) -> str:
    """Why secrets are not environment variables (names to string values), or ""."""
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        return "Expected an object of string names to string values."
    if bad := [k for k in secrets if not ENV_NAME.fullmatch(k)]:
        return f"Not an environment variable name: {', '.join(map(repr, bad))}."
    return ""
