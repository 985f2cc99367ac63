"""The `agenthub` commands, one `cmd_*` function each: call the API, print the answer, return
the exit code."""

from __future__ import annotations

import argparse
import getpass
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from agenthub_cli.client import UNSETTLED, ApiError, Client, CliError, job_path
from agenthub_cli.config import DEFAULT_URL, config_path, load_config, save_config, server_url
from agenthub_cli.output import (
    LIST_COLUMNS,
    bell,
    clean,
    err,
    event_printer,
    job_row,
    out,
    out_json,
    status_line,
    summary,
)

# Attempt states after which no more events come (the follow loop of `logs -f` ends on them).
TERMINAL_ATTEMPT = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})
# Job states `wait` ends on with exit code 0 (see exit_status for the others).
SETTLED_OK = frozenset({"needs_review", "approved", "merged", "no_changes"})
WAIT_POLL_SECONDS = 30
FINDINGS_EXIT = 4


# --- login and logout --------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    saved = load_config()
    default = os.environ.get("AGENTHUB_URL") or saved.get("url") or DEFAULT_URL
    url = server_url(args.url or ask(f"AgentHub URL [{default}]: ") or default)
    token = args.token or ask_secret("API token (from your profile page): ")
    if not token:
        raise CliError("no token given; nothing was saved.", 2, "usage")
    with Client(url, token) as client:
        client.json("GET", "/jobs", params={"per_page": 1})  # proves the URL and the token
    path = save_config(url, token)
    if args.json:
        out_json({"url": url, "config": str(path)})
    else:
        out(clean(f"Logged in to {url}; saved to {path}"))
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Forget the saved server and token; with --revoke, revoke that token on the server first
    (else it stays valid: revoke it on /settings/tokens/)."""
    saved = load_config()
    path = config_path()
    revoked = None
    if args.revoke and saved.get("token"):
        url, key = saved.get("url", DEFAULT_URL), saved["token"]
        with Client(url, key) as client:
            listed = client.request("GET", "/tokens").json()
            mine = [t for t in listed if isinstance(t, dict) and key.startswith(t["prefix"])]
            if len(mine) != 1:
                raise CliError(
                    f"cannot tell which of your tokens is the saved one ({len(mine)} match); "
                    "revoke it on /settings/tokens/. Nothing was changed.",
                )
            client.request("DELETE", f"/tokens/{mine[0]['id']}")
            revoked = mine[0]["name"]
    removed = path.exists()
    path.unlink(missing_ok=True)
    if args.json:
        out_json({"config": str(path), "removed": removed, "revoked": revoked})
    elif not removed:
        out(clean(f"Not logged in: {path} does not exist."))
    else:
        note = f"revoked token {revoked!r} and " if revoked else ""
        out(clean(f"Logged out: {note}removed {path}."))
    return 0


def ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return input(prompt).strip()


def ask_secret(prompt: str) -> str:
    # Piped (`pass show agenthub | agenthub login --url ...`), the token is the next line.
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(prompt).strip()


# --- submit and wait ---------------------------------------------------------------------------


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    body = {
        "repo": args.repo,
        "agent": args.agent,
        "prompt": read_prompt(args),
        "base_ref": args.base_ref,
        "title": args.title,
        "attempts": args.attempts,
        "priority": args.priority,
        "model": args.model,
    }
    created = client.json("POST", "/jobs", body=body)
    public_id = str(created["id"])
    if not args.wait:
        if args.json:
            out_json(created)
        else:
            out(clean(public_id))
        return 0
    if not args.json:
        out(clean(public_id))
    return wait_for_job(client, public_id, args.timeout, as_json=args.json)


def read_prompt(args: argparse.Namespace) -> str:
    """The instruction from PROMPT, from --file PATH, or from stdin (PROMPT `-`, or piped)."""
    if args.file is not None:
        if args.prompt is not None:
            raise CliError("give the instruction as PROMPT or with --file, not both", 2, "usage")
        try:
            return Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the prompt file: {exc}", 2, "usage") from None
    if args.prompt is None and sys.stdin.isatty():
        raise CliError("no instruction: give PROMPT, --file PATH, or pipe it in", 2, "usage")
    if args.prompt in (None, "-"):
        return sys.stdin.read()
    return str(args.prompt)


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    return wait_for_job(client, args.id, args.timeout, as_json=args.json)


def wait_for_job(client: Client, public_id: str, timeout: float | None, *, as_json: bool) -> int:
    """Long-poll until the job is settled; the bell tells a person who looked away."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        poll = WAIT_POLL_SECONDS
        if deadline is not None:
            poll = max(1, min(poll, math.ceil(deadline - time.monotonic())))
        job = client.wait(public_id, poll)
        if job.get("status") not in UNSETTLED:
            if as_json:
                out_json(job)
            else:
                out(status_line(job))
            bell()
            return exit_status(job)
        if deadline is not None and time.monotonic() >= deadline:
            if as_json:
                out_json(job)
            err(f"job {public_id} is still {job.get('status')} after {timeout:g} s")
            bell()
            return 2


def exit_status(job: dict[str, Any]) -> int:
    """0 the job is done well, 2 it was cancelled or timed out, 4 a check reported findings,
    1 any other ending."""
    status = job.get("status")
    if status in SETTLED_OK:
        return 0
    if status == "findings":
        return FINDINGS_EXIT
    latest = (job.get("attempts") or [{}])[-1]
    if status == "cancelled" or (status == "failed" and latest.get("status") == "timed_out"):
        return 2
    return 1


# --- status and list ---------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    job = client.json("GET", job_path(args.id))
    if args.json:
        out_json(job)
        return 0
    for line in summary(job):
        out(clean(line))
    return 0


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    params = {
        "status": args.status,
        "repo": args.repo,
        "submitter": args.submitter,
        "page": args.page,
        "per_page": args.limit,
    }
    page = client.json("GET", "/jobs", params=params)
    if args.json:
        out_json(page)
        return 0
    rows = [job_row(job) for job in page.get("jobs", [])]
    if not rows:
        err("no jobs")
        return 0
    widths = [max(len(row[i]) for row in [LIST_COLUMNS, *rows]) for i in range(len(LIST_COLUMNS))]
    for row in [LIST_COLUMNS, *rows]:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if page.get("page", 1) < page.get("pages", 1):
        err(f"page {page['page']} of {page['pages']} ({page.get('count')} jobs); --page for more")
    return 0


# --- logs --------------------------------------------------------------------------------------


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    show = event_printer(as_json=args.json)
    attempt, after = args.attempt, 0
    while True:  # the backlog, a page at a time
        page = client.json(
            "GET", job_path(args.id, "events"), params={"after": after, "attempt": attempt}
        )
        # Pin the attempt: a re-run must not splice another attempt's numbering into this one.
        attempt = page["attempt"]
        for event in page["events"]:
            if event["seq"] > after:
                show(event)
                after = event["seq"]
        if not (page["events"] and after < page["last_seq"]):
            break
    if args.follow and page["status"] not in TERMINAL_ATTEMPT:
        for event in client.follow(args.id, attempt, after):
            show(event)
    return 0


# --- diff, review, merge, cancel, rerun --------------------------------------------------------


def cmd_diff(client: Client, args: argparse.Namespace) -> int:
    response = client.request("GET", job_path(args.id, "diff"), params={"attempt": args.attempt})
    text = response.content.decode("utf-8", errors="replace")
    if args.json:
        diff_hash = response.headers.get("X-Diff-Hash") or None
        out_json({"id": args.id, "attempt": args.attempt, "diff_hash": diff_hash, "patch": text})
        return 0
    # Piped, the patch stays byte-exact for `git apply`; on a terminal it is neutralised.
    if sys.stdout.isatty():
        text = clean(text, keep_newlines=True)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def cmd_review(client: Client, args: argparse.Namespace) -> int:
    body = {
        "decision": args.decision,
        "comment": args.comment,
        "attempt": args.attempt,
        "comments": [line_comment(where, text) for where, text in args.lines],
    }
    review = client.json("POST", job_path(args.id, "reviews"), body=body)
    if args.json:
        out_json(review)
    else:
        follow_up = f", follow-up attempt {review['follow_up']}" if review.get("follow_up") else ""
        out(
            clean(
                f"{review.get('job')} {review.get('status')} (attempt {review.get('attempt')}"
                f"{follow_up})"
            )
        )
    return 0


def line_comment(where: str, body: str) -> dict[str, Any]:
    """`--line PATH:LINE[:old|:new] TEXT` as the API's comment object."""
    path, side = where, "new"
    head, _, last = where.rpartition(":")
    if last in ("old", "new") and head:
        path, side = head, last
    path, _, line = path.rpartition(":")
    if not path or not line.isdigit() or int(line) < 1:
        raise CliError(f"--line {where!r}: write PATH:LINE (or PATH:LINE:old), e.g. app.py:12.", 2)
    return {"path": path, "line": int(line), "side": side, "body": body}


def cmd_merge(client: Client, args: argparse.Namespace) -> int:
    try:
        merged = client.json("POST", job_path(args.id, "merge"))
    except ApiError as exc:
        if exc.status != 409 or not exc.body.get("conflicts") or args.json:
            raise
        err(exc.message)
        for path in exc.body["conflicts"]:
            print(f"  {clean(str(path))}", file=sys.stderr)
        return 1
    if args.json:
        out_json(merged)
        return 0
    out(clean(str(merged["commit"])))
    push = merged.get("push") or {}
    if push.get("status") == "failed":
        err(f"push failed: {clean(str(push.get('detail', '')))} (retry: POST .../push)")
        return 1
    if push:
        print(clean(str(push.get("detail", ""))), file=sys.stderr)
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.json("POST", job_path(args.id, "cancel"))
    if args.json:
        out_json(job)
    else:
        out(clean(f"{job.get('id')} {job.get('status')}"))
    return 0


def cmd_rerun(client: Client, args: argparse.Namespace) -> int:
    job = client.json("POST", job_path(args.id, "rerun"))
    if args.json:
        out_json(job)
    else:
        out(clean(f"{job.get('id')} {job.get('status')} (attempt {job.get('attempt')})"))
    return 0


def cmd_mcp(client: Client, args: argparse.Namespace) -> int:
    if not client.token:
        raise CliError("`agenthub mcp` acts as a user: run `agenthub login` or set AGENTHUB_TOKEN")
    try:
        from agenthub_cli.mcp_server import serve  # the MCP SDK loads only for this command
    except ImportError as exc:
        raise CliError(
            f"`agenthub mcp` needs the MCP SDK (pip install 'mcp>=2.3'): {exc}"
        ) from None
    serve(client)
    return 0
