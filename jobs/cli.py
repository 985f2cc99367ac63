"""The `agenthub` command-line client: a thin shell over the HTTP API, standard library only.

Exit codes: 0 success, 1 the API refused or the job did not end well, 2 usage error or `wait`
timed out, 3 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

DEFAULT_URL = "http://localhost:8000"
# Attempt states after which no more events come (the follow loop of `logs -f` ends on them).
TERMINAL_ATTEMPT = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})
# Job states `wait` ends on with exit code 0; every other settled state ends with 1.
SETTLED_OK = frozenset({"needs_review", "approved", "merged", "no_changes"})
UNSETTLED = frozenset({"queued", "running"})
WAIT_POLL_SECONDS = 30
FOLLOW_INTERVAL = 1.0
REQUEST_TIMEOUT = 60.0
# C0 controls except tab, DEL and C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class CliError(Exception):
    """An expected failure: printed as `agenthub: <message>`, never as a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(CliError):
    """The API answered with an error status; `body` is its `{error, detail, field?}`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        detail = str(body.get("detail") or body.get("error") or f"HTTP {status}")
        if body.get("field"):
            detail += f" (field: {body['field']})"
        super().__init__(detail)
        self.status = status
        self.body = body


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """Make untrusted text safe to print on a terminal: ESC shown as `^[`, other controls gone."""
    pattern = _CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub("", text.replace("\x1b", "^["))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send the token to wherever it points and turn POSTs into GETs.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.opener = urllib.request.build_opener(_NoRedirect)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> bytes:
        request = self._request(method, path, params, body)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise CliError(f"cannot reach {self.url}: {reason}", code=3) from None

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raw = self.call(method, path, **kwargs)
        try:
            data = json.loads(raw)
        except ValueError:
            raise CliError(f"{self.url} did not answer with JSON; is it AgentHub?") from None
        if not isinstance(data, dict):
            raise CliError(f"{self.url} answered with unexpected JSON.")
        return data

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> urllib.request.Request:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.url}/api/v1{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
            headers["Content-Type"] = "application/json"
        # server_url() admitted only http and https, so no file: or custom scheme gets here.
        return urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310

    def _api_error(self, exc: urllib.error.HTTPError) -> CliError:
        if 300 <= exc.code < 400:
            where = exc.headers.get("Location", "elsewhere")
            return CliError(f"{self.url} redirects to {where}; point AGENTHUB_URL there.")
        try:
            body = json.loads(exc.read())
        except (ValueError, OSError):
            body = None
        if not isinstance(body, dict):
            return CliError(f"{self.url} answered HTTP {exc.code} {exc.reason}.")
        return ApiError(exc.code, body)


def job_path(public_id: str, action: str = "") -> str:
    return f"/jobs/{urllib.parse.quote(public_id, safe='')}" + (f"/{action}" if action else "")


def out(text: str) -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(f"agenthub: {clean(text)}", file=sys.stderr, flush=True)


# --- submit and wait ---------------------------------------------------------------------------


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    body = {
        "repo": args.repo,
        "agent": args.agent,
        "prompt": prompt,
        "base_ref": args.base_ref,
        "title": args.title,
        "attempts": args.attempts,
        "priority": args.priority,
    }
    created = client.json("POST", "/jobs", body=body)
    out(clean(str(created["id"])))
    if not args.wait:
        return 0
    return wait_for_job(client, str(created["id"]), args.timeout)


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    return wait_for_job(client, args.id, args.timeout)


def wait_for_job(client: Client, public_id: str, timeout: float | None) -> int:
    """Long-poll until the job is settled; the bell tells a person who looked away."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        poll = WAIT_POLL_SECONDS
        if deadline is not None:
            poll = max(1, min(poll, math.ceil(deadline - time.monotonic())))
        job = client.json(
            "GET", job_path(public_id, "wait"), params={"timeout": poll}, timeout=poll + 30
        )
        if job.get("status") not in UNSETTLED:
            out(status_line(job))
            bell()
            return 0 if job.get("status") in SETTLED_OK else 1
        if deadline is not None and time.monotonic() >= deadline:
            err(f"job {public_id} is still {job.get('status')} after {timeout:g} s")
            bell()
            return 2


def bell() -> None:
    sys.stderr.write("\a")
    sys.stderr.flush()


def status_line(job: dict[str, Any]) -> str:
    title = f"  {job['title']}" if job.get("title") else ""
    return clean(f"{job.get('id')} {job.get('status')}{title}")


# --- status ------------------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    job = client.json("GET", job_path(args.id))
    if args.json:
        out(json.dumps(job, indent=2))
        return 0
    for line in summary(job):
        out(clean(line))
    return 0


def summary(job: dict[str, Any]) -> list[str]:
    base = f"{job.get('base_ref')} ({str(job.get('base_commit') or '')[:10]})"
    lines = [
        f"{job.get('id')}  {job.get('status')}",
        f"title:    {job.get('title')}",
        f"repo:     {job.get('repo')} @ {base}",
        f"agent:    {job.get('agent')}   submitted by {job.get('submitter')}",
    ]
    if job.get("progress") is not None:
        lines.append(f"progress: {job['progress']}% {job.get('progress_message') or ''}".rstrip())
    if job.get("merge_commit"):
        lines.append(f"merged:   {job['merge_commit']}")
    if job.get("conflicts"):
        lines.append(f"conflicts: {', '.join(job['conflicts'])}")
    lines += [attempt_line(a) for a in job.get("attempts", [])]
    return lines


def attempt_line(attempt: dict[str, Any]) -> str:
    stats = attempt.get("diff_stats") or {}
    line = (
        f"  attempt {attempt.get('number')}: {attempt.get('status')}"
        f"  {stats.get('files', 0)} file(s) +{stats.get('added', 0)} -{stats.get('deleted', 0)}"
    )
    if attempt.get("partial"):
        line += " (partial)"
    if attempt.get("exit_code") is not None:
        line += f"  exit {attempt['exit_code']}"
    if attempt.get("reason"):
        line += f"  {attempt['reason']}"
    return line


# --- logs --------------------------------------------------------------------------------------


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    attempt, after = args.attempt, 0
    while True:
        page = client.json(
            "GET", job_path(args.id, "events"), params={"after": after, "attempt": attempt}
        )
        # Pin the attempt: a re-run must not splice another attempt's numbering into this one.
        attempt = page["attempt"]
        for event in page["events"]:
            if event["seq"] > after:
                out(event_line(event))
                after = event["seq"]
        if page["events"] and after < page["last_seq"]:
            continue  # more than one page behind: fetch the rest at once
        if not args.follow or page["status"] in TERMINAL_ATTEMPT:
            return 0
        time.sleep(FOLLOW_INTERVAL)


def event_line(event: dict[str, Any]) -> str:
    kind = str(event.get("kind", ""))
    if event.get("stream") == "stderr":
        kind += ":stderr"
    data = event.get("data") or {}
    text = str(event.get("text", ""))
    if kind.startswith("progress") and "percent" in data:
        text = f"{data['percent']}% {text}".rstrip()
    if data.get("file"):
        where = f"{data['file']}:{data['line']}" if data.get("line") else str(data["file"])
        text = f"{where}: {text}"
    return f"{clock(str(event.get('ts', '')))} [{clean(kind)}] {clean(text)}"


def clock(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


# --- diff, review, merge, cancel, rerun --------------------------------------------------------


def cmd_diff(client: Client, args: argparse.Namespace) -> int:
    patch = client.call("GET", job_path(args.id, "diff"), params={"attempt": args.attempt})
    text = patch.decode("utf-8", errors="replace")
    # Piped, the patch stays byte-exact for `git apply`; on a terminal it is neutralised.
    if sys.stdout.isatty():
        text = clean(text, keep_newlines=True)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def cmd_review(client: Client, args: argparse.Namespace) -> int:
    body = {"decision": args.decision, "comment": args.comment, "attempt": args.attempt}
    review = client.json("POST", job_path(args.id, "reviews"), body=body)
    out(clean(f"{review.get('job')} {review.get('status')} (attempt {review.get('attempt')})"))
    return 0


def cmd_merge(client: Client, args: argparse.Namespace) -> int:
    try:
        merged = client.json("POST", job_path(args.id, "merge"))
    except ApiError as exc:
        if exc.status != 409 or not exc.body.get("conflicts"):
            raise
        err(exc.message)
        for path in exc.body["conflicts"]:
            print(f"  {clean(str(path))}", file=sys.stderr)
        return 1
    out(clean(str(merged["commit"])))
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.json("POST", job_path(args.id, "cancel"))
    out(clean(f"{job.get('id')} {job.get('status')}"))
    return 0


def cmd_rerun(client: Client, args: argparse.Namespace) -> int:
    job = client.json("POST", job_path(args.id, "rerun"))
    out(clean(f"{job.get('id')} {job.get('status')} (attempt {job.get('attempt')})"))
    return 0


# --- arguments ---------------------------------------------------------------------------------

Command = Callable[[Client, argparse.Namespace], int]


def _timeout(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {value!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    # --url/--token work before or after the command; SUPPRESS keeps a subcommand's absent flag
    # from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server (env AGENTHUB_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (env AGENTHUB_TOKEN)")
    parser = argparse.ArgumentParser(prog="agenthub", description="AgentHub command-line client.")
    parser.add_argument("--url", default=None, help=f"server (env AGENTHUB_URL, {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="API token (env AGENTHUB_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(func=func)
        if name != "submit":
            sub.add_argument("id", metavar="ID", help="the job id")
        return sub

    _submit_arguments(add("submit", cmd_submit, "submit a job and print its id"))
    add("status", cmd_status, "show a job").add_argument(
        "--json", action="store_true", help="print the raw JSON"
    )
    logs = add("logs", cmd_logs, "print an attempt's events")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the attempt ends")
    logs.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    add("diff", cmd_diff, "print an attempt's patch").add_argument(
        "--attempt", type=int, help="attempt number (default: the latest)"
    )
    _review_arguments(add("review", cmd_review, "approve, reject or request changes"))
    add("merge", cmd_merge, "merge an approved job and print the commit")
    add("cancel", cmd_cancel, "cancel a job's open attempts")
    add("rerun", cmd_rerun, "run the job again on the latest base")
    add("wait", cmd_wait, "wait until the job is settled").add_argument(
        "--timeout", type=_timeout, help="give up after S seconds (exit 2)", metavar="S"
    )
    return parser


def _submit_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--repo", required=True, help="repository name")
    sub.add_argument("--agent", required=True, help="agent name")
    sub.add_argument("--base-ref", help="branch, tag or commit to start from")
    sub.add_argument("--title")
    sub.add_argument("--attempts", type=int, help="parallel attempts (1-5)")
    sub.add_argument("--priority", type=int, help="-10..10, higher runs first")
    sub.add_argument("--wait", action="store_true", help="then wait like `agenthub wait`")
    sub.add_argument(
        "--timeout", type=_timeout, metavar="S", help="with --wait: give up after S seconds"
    )
    sub.add_argument("prompt", metavar="PROMPT", help="the instruction; - reads it from stdin")


def _review_arguments(sub: argparse.ArgumentParser) -> None:
    decision = sub.add_mutually_exclusive_group(required=True)
    for flag, value in (("--approve", "approve"), ("--reject", "reject")):
        decision.add_argument(flag, dest="decision", action="store_const", const=value)
    decision.add_argument(
        "--request-changes", dest="decision", action="store_const", const="request_changes"
    )
    sub.add_argument("--comment", help="comment (with --request-changes: what to change)")
    sub.add_argument("--attempt", type=int, help="attempt number (default: the result)")


def server_url(args: argparse.Namespace) -> str:
    url = (args.url or os.environ.get("AGENTHUB_URL") or DEFAULT_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"the server URL must look like {DEFAULT_URL}, not {url!r}", code=2)
    return url


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    try:
        client = Client(server_url(args), args.token or os.environ.get("AGENTHUB_TOKEN"))
        code: int = args.func(client, args)
        return code
    except CliError as exc:
        err(exc.message)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `agenthub logs ID | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
