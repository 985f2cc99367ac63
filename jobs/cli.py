"""The `agenthub` command-line client: a thin shell over the HTTP API.

Exit codes: 0 success (for `wait` and `submit --wait`: the job needs review, was approved or
merged, or made no changes); 1 the API refused, the answer made no sense, or the job failed or
was rejected; 2 usage error, or the job was cancelled or timed out, or `wait` gave up;
3 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import platformdirs
from httpx_sse import SSEError, connect_sse

DEFAULT_URL = "http://localhost:8000"
# Attempt states after which no more events come (the follow loop of `logs -f` ends on them).
TERMINAL_ATTEMPT = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})
# Job states `wait` ends on with exit code 0 (see exit_status for the others).
SETTLED_OK = frozenset({"needs_review", "approved", "merged", "no_changes"})
UNSETTLED = frozenset({"queued", "running"})
WAIT_POLL_SECONDS = 30
FOLLOW_RETRY_SECONDS = 1.0
REQUEST_TIMEOUT = 60.0
# The event stream sends a keep-alive comment every 15 s; silence for longer means it is gone.
STREAM_READ_TIMEOUT = 45.0
# C0 controls except tab, DEL and C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# SGR colours of `logs` lines by kind; only on a terminal, and never with NO_COLOR set.
COLOURS = {"error": "31", "warning": "33", "stderr": "35", "notice": "36", "progress": "32"}


class CliError(Exception):
    """An expected failure: printed as `agenthub: <message>`, never as a traceback.

    `error` is the short code `--json` prints beside the message."""

    def __init__(self, message: str, code: int = 1, error: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.error = error

    def as_json(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.message}


class ApiError(CliError):
    """The API answered with an error status; `body` is its `{error, detail, field?, ...}`."""

    def __init__(self, status: int, body: dict[str, Any], message: str | None = None) -> None:
        detail = message or str(body.get("detail") or body.get("error") or f"HTTP {status}")
        if body.get("field") and not message:
            detail += f" (field: {body['field']})"
        super().__init__(detail, error=str(body.get("error") or status))
        self.status = status
        self.body = body

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), **self.body, "http_status": self.status}


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """Make untrusted text safe to print on a terminal: ESC shown as `^[`, other controls gone."""
    pattern = _CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub("", text.replace("\x1b", "^["))


class Client:
    """The HTTP API as the token's user, for the CLI and the MCP server (jobs/mcp_server.py).

    Every failure becomes a CliError whose message a person can act on."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # httpx follows no redirect unless asked, and error() says where one pointed.
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = self.http.request(
                method,
                path,
                params=_present(params),
                json=None if body is None else _present(body),
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        if not response.is_success:
            raise self.error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise self.not_agenthub(response) from None
        if not isinstance(data, dict):
            raise self.not_agenthub(response)
        return data

    def wait(self, public_id: str, seconds: int) -> dict[str, Any]:
        """One long poll: the job once it is settled, or as it is after `seconds`."""
        params = {"timeout": seconds}
        return self.json("GET", job_path(public_id, "wait"), params=params, timeout=seconds + 30)

    def follow(self, public_id: str, attempt: int, after: int) -> Iterator[dict[str, Any]]:
        """An attempt's events after seq `after` as they are written, until the attempt ends.

        Server-Sent Events; a dropped connection resumes after the last seq seen, so nothing is
        missed and nothing comes twice."""
        params = {"attempt": attempt}
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                headers = {"Last-Event-ID": str(after)}
                with connect_sse(
                    self.http,
                    "GET",
                    job_path(public_id, "events"),
                    params={**params, "after": after},
                    headers=headers,
                    timeout=timeout,
                ) as source:
                    if not source.response.is_success:
                        raise self.error(source.response)
                    for sse in source.iter_sse():
                        if sse.event == "end":
                            return
                        if sse.event == "error":  # the token was revoked, the job is gone…
                            problem = sse.json()
                            raise CliError(
                                str(problem.get("detail", "the server ended the stream")),
                                error=str(problem.get("error", "error")),
                            )
                        event = sse.json()
                        if event["seq"] > after:
                            after = event["seq"]
                            yield event
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise self.unreachable(exc) from None
            except (httpx.TransportError, ValueError):
                pass  # cut off mid-stream (or a torn line): resume below
            except SSEError:
                raise CliError(f"{self.url} does not stream events; is it AgentHub?") from None
            time.sleep(FOLLOW_RETRY_SECONDS)

    def unreachable(self, exc: Exception) -> CliError:
        reason = str(exc) or type(exc).__name__
        return CliError(f"cannot reach AgentHub at {self.url}: {reason}", 3, "unreachable")

    def not_agenthub(self, response: httpx.Response) -> CliError:
        return CliError(
            f"{self.url} answered HTTP {response.status_code} {response.reason_phrase}, not as"
            " the AgentHub API does; check the URL (AGENTHUB_URL or `agenthub login`).",
            error="not_agenthub",
        )

    def error(self, response: httpx.Response) -> CliError:
        if response.is_redirect:
            # Following it would re-send the token; name the server it points at instead.
            where = response.headers.get("Location", "elsewhere").split("/api/v1", 1)[0]
            return CliError(
                f"{self.url} redirects to {where}; use that as the server URL.", error="redirect"
            )
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not ("detail" in body or "error" in body):
            return self.not_agenthub(response)
        if response.status_code == 401:
            how = "set AGENTHUB_TOKEN" if self.token else "set AGENTHUB_TOKEN or pass --token"
            hint = f" Run `agenthub login` or {how} to use a valid API token."
            return ApiError(401, body, str(body.get("detail") or "Unauthorized.") + hint)
        if response.status_code == 429:
            return ApiError(429, body, rate_limited(body, response.headers.get("Retry-After")))
        return ApiError(response.status_code, body)


def rate_limited(body: dict[str, Any], retry_after: str | None) -> str:
    detail = str(body.get("detail") or "Too many requests.")
    seconds = retry_seconds(retry_after)
    if seconds is None:
        return f"rate limited by AgentHub: {detail} Try again later."
    return f"rate limited by AgentHub: {detail} Retry in {seconds} s."


def retry_seconds(value: str | None) -> int | None:
    """Retry-After as seconds from now; the header is a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, math.ceil((when - datetime.now(UTC)).total_seconds()))


def _present(values: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if values is None else {k: v for k, v in values.items() if v is not None}


def job_path(public_id: str, action: str = "") -> str:
    return f"/jobs/{urllib.parse.quote(public_id, safe='')}" + (f"/{action}" if action else "")


def out(text: str) -> None:
    print(text, flush=True)


def out_json(data: Any, *, indent: int | None = 2) -> None:
    # ensure_ascii escapes every control character, so JSON output is always terminal-safe.
    out(json.dumps(data, indent=indent))


def err(text: str) -> None:
    print(f"agenthub: {clean(text)}", file=sys.stderr, flush=True)


# --- configuration -----------------------------------------------------------------------------


def config_path() -> Path:
    """`~/.config/agenthub/config.json` on Linux ($XDG_CONFIG_HOME honoured)."""
    return Path(platformdirs.user_config_dir("agenthub", appauthor=False)) / "config.json"


def load_config() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}; run `agenthub login` again.", 2) from None
    if not isinstance(data, dict):
        raise CliError(f"{path} is not a JSON object; run `agenthub login` again.", 2)
    return {k: v for k, v in data.items() if k in ("url", "token") and isinstance(v, str)}


def save_config(url: str, token: str) -> Path:
    """Write the server and token readable by their owner only (file 0600, directory 0700)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    partial = path.with_name(f".{path.name}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left over from before
    with os.fdopen(fd, "w") as file:
        json.dump({"url": url, "token": token}, file, indent=2)
    os.replace(partial, path)
    return path


def credentials(args: argparse.Namespace) -> tuple[str, str | None]:
    """Flags, then the environment, then the file `agenthub login` wrote.

    The saved token goes only to the server it was saved for."""
    url = args.url or os.environ.get("AGENTHUB_URL")
    token = args.token or os.environ.get("AGENTHUB_TOKEN")
    saved = load_config() if url is None or token is None else {}
    url = server_url(url or saved.get("url") or DEFAULT_URL)
    if token is None and saved.get("url") == url:
        token = saved.get("token")
    return url, token


def server_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"the server URL must look like {DEFAULT_URL}, not {url!r}", 2, "usage")
    return url


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
    """0 the job is done well, 2 it was cancelled or timed out, 1 any other ending."""
    status = job.get("status")
    if status in SETTLED_OK:
        return 0
    latest = (job.get("attempts") or [{}])[-1]
    if status == "cancelled" or (status == "failed" and latest.get("status") == "timed_out"):
        return 2
    return 1


def bell() -> None:
    sys.stderr.write("\a")
    sys.stderr.flush()


def status_line(job: dict[str, Any]) -> str:
    title = f"  {job['title']}" if job.get("title") else ""
    return clean(f"{job.get('id')} {job.get('status')}{title}")


# --- status and list ---------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    job = client.json("GET", job_path(args.id))
    if args.json:
        out_json(job)
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


LIST_COLUMNS = ("ID", "STATUS", "REPO", "AGENT", "BY", "AGE", "TITLE")
TITLE_WIDTH = 60


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


def job_row(job: dict[str, Any]) -> tuple[str, ...]:
    title = clean(str(job.get("title") or ""))
    if len(title) > TITLE_WIDTH:
        title = title[: TITLE_WIDTH - 1] + "…"
    cells = [job.get(k) for k in ("id", "status", "repo", "agent", "submitter")]
    return (*(clean(str(c or "")) for c in cells), age(str(job.get("created_at") or "")), title)


def age(ts: str) -> str:
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds()
    except (ValueError, TypeError):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


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


def event_printer(*, as_json: bool) -> Callable[[dict[str, Any]], None]:
    if as_json:
        return lambda event: out_json(event, indent=None)  # one JSON object a line
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return lambda event: out(paint(event_line(event), event) if colour else event_line(event))


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


def paint(line: str, event: dict[str, Any]) -> str:
    """Colour a line already made safe by clean(): the only escapes in it are ours."""
    kind = str(event.get("kind"))
    sgr = COLOURS.get(kind) or (COLOURS["stderr"] if event.get("stream") == "stderr" else None)
    if kind == "status":
        sgr = "1"
    return f"\x1b[{sgr}m{line}\x1b[0m" if sgr else line


def clock(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


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
        out(clean(f"{review.get('job')} {review.get('status')} (attempt {review.get('attempt')})"))
    return 0


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
    else:
        out(clean(str(merged["commit"])))
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
        from jobs.mcp_server import serve  # the MCP SDK loads only for this command
    except ImportError as exc:
        raise CliError(
            f"`agenthub mcp` needs the MCP SDK (pip install 'mcp>=2.3'): {exc}"
        ) from None
    serve(client)
    return 0


# --- arguments ---------------------------------------------------------------------------------

Command = Callable[[Client, argparse.Namespace], int]


def _timeout(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {value!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    # --url/--token/--json work before or after the command; SUPPRESS keeps a subcommand's absent
    # flag from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server (env AGENTHUB_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (env AGENTHUB_TOKEN)")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="agenthub",
        description="AgentHub command-line client.",
        epilog="Exit status: 0 done (the job needs review, was approved or merged, or made no"
        " changes); 1 refused or failed; 2 usage error, or the job was cancelled or timed out;"
        " 3 the server cannot be reached.",
    )
    parser.add_argument("--url", default=None, help=f"server (env AGENTHUB_URL, {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="API token (env AGENTHUB_TOKEN)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command | None, help: str, *, job: bool = True) -> Any:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(func=func)
        if job:
            sub.add_argument("id", metavar="ID", help="the job id")
        return sub

    add("login", None, "save the server URL and your API token", job=False)
    add("logout", None, "forget the saved server URL and token", job=False).add_argument(
        "--revoke", action="store_true", help="also revoke the saved token on the server"
    )
    _submit_arguments(add("submit", cmd_submit, "submit a job and print its id", job=False))
    add("status", cmd_status, "show a job")
    _list_arguments(add("list", cmd_list, "list your teams' jobs, newest first", job=False))
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
    add("mcp", cmd_mcp, "serve the Model Context Protocol on stdio", job=False)
    return parser


def _submit_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--repo", required=True, help="repository name")
    sub.add_argument("--agent", required=True, help="agent name")
    sub.add_argument("--base-ref", help="branch, tag or commit to start from")
    sub.add_argument("--title")
    sub.add_argument("--attempts", type=int, help="parallel attempts (1-5)")
    sub.add_argument("--priority", type=int, help="-10..10, higher runs first")
    sub.add_argument("--file", metavar="PATH", help="read the instruction from a file")
    sub.add_argument("--wait", action="store_true", help="then wait like `agenthub wait`")
    sub.add_argument(
        "--timeout", type=_timeout, metavar="S", help="with --wait: give up after S seconds"
    )
    sub.add_argument(
        "prompt", nargs="?", metavar="PROMPT", help="the instruction; - or none reads stdin"
    )


def _list_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--status", help="only jobs in this state, e.g. needs_review")
    sub.add_argument("--repo", help="only jobs of this repository")
    mine = sub.add_mutually_exclusive_group()
    mine.add_argument(
        "--mine", dest="submitter", action="store_const", const="me", help="only jobs you submitted"
    )
    mine.add_argument("--submitter", metavar="NAME", help="only jobs this user submitted")
    sub.add_argument("--page", type=int, help="page number (default 1)")
    sub.add_argument("--limit", type=int, help="jobs per page (default 50, at most 200)")


def _review_arguments(sub: argparse.ArgumentParser) -> None:
    decision = sub.add_mutually_exclusive_group(required=True)
    for flag, value in (("--approve", "approve"), ("--reject", "reject")):
        decision.add_argument(flag, dest="decision", action="store_const", const=value)
    decision.add_argument(
        "--request-changes", dest="decision", action="store_const", const="request_changes"
    )
    sub.add_argument(
        "-m", "--message", "--comment", dest="comment", help="comment (what to change)"
    )
    sub.add_argument("--attempt", type=int, help="attempt number (default: the result)")
    sub.add_argument(
        "--line",
        dest="lines",
        action="append",
        nargs=2,
        type=str,
        default=[],
        metavar=("PATH:LINE", "TEXT"),
        help="a comment on a line of the diff (PATH:LINE:old for a removed line); repeatable",
    )


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.func is None:
            return cmd_logout(args) if args.command == "logout" else cmd_login(args)
        with Client(*credentials(args)) as client:
            code: int = args.func(client, args)
            return code
    except CliError as exc:
        if args.json:
            out_json(exc.as_json())
        err(exc.message)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `agenthub logs ID | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
