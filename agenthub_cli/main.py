"""The `agenthub` command-line client: a thin shell over the HTTP API.

Exit codes: 0 success (for `wait` and `submit --wait`: the job needs review, was approved or
merged, or made no changes); 1 the API refused, the answer made no sense, or the job failed or
was rejected; 2 usage error, or the job was cancelled or timed out, or `wait` gave up;
3 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agenthub_cli.client import Client, CliError
from agenthub_cli.commands import (
    cmd_cancel,
    cmd_diff,
    cmd_list,
    cmd_login,
    cmd_logout,
    cmd_logs,
    cmd_mcp,
    cmd_merge,
    cmd_rerun,
    cmd_review,
    cmd_status,
    cmd_submit,
    cmd_wait,
)
from agenthub_cli.config import DEFAULT_URL, credentials
from agenthub_cli.output import err, out_json
from agenthub_cli.reproduce import cmd_reproduce

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
        " 3 the server cannot be reached; 4 a check reported findings.",
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
    _reproduce_arguments(add("reproduce", cmd_reproduce, "an attempt's environment, at home"))
    add("mcp", cmd_mcp, "serve the Model Context Protocol on stdio", job=False)
    return parser


def _submit_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--repo", required=True, help="repository name")
    sub.add_argument("--agent", required=True, help="agent name")
    sub.add_argument("--base-ref", help="branch, tag or commit to start from")
    sub.add_argument("--title")
    sub.add_argument("--attempts", type=int, help="parallel attempts (1-5)")
    sub.add_argument("--priority", type=int, help="-10..10, higher runs first")
    sub.add_argument("--model", help="an AI agent's model for this job, not the agent's own")
    sub.add_argument("--file", metavar="PATH", help="read the instruction from a file")
    sub.add_argument("--wait", action="store_true", help="then wait like `agenthub wait`")
    sub.add_argument(
        "--timeout", type=_timeout, metavar="S", help="with --wait: give up after S seconds"
    )
    sub.add_argument(
        "prompt", nargs="?", metavar="PROMPT", help="the instruction; - or none reads stdin"
    )


def _reproduce_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    sub.add_argument("--dir", help="where to check the workspace out (default agenthub-ID-N)")
    sub.add_argument(
        "--at", choices=("start", "result"), default="start", help="the workspace's commit"
    )
    sub.add_argument("--run", action="store_true", help="run the docker command it prints")
    sub.add_argument(
        "--server", action="store_true", help="run the attempt again on the server instead"
    )
    sub.add_argument(
        "command", nargs="*", help="with --run: what to run in it instead of a shell (after --)"
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
