"""`agenthub reproduce ID`: an attempt's environment on your own machine — its workspace as a git
checkout at its start (or result) and, for a docker attempt, its image with the repository's
environment loaded into your Docker — and the `docker run` that opens a shell there;
`--run` runs it, `--server` runs the attempt again on the server instead."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agenthub_cli.client import Client, CliError, job_path
from agenthub_cli.output import clean, out, out_json

ENV_PATH = "/opt/env"  # where an attempt's environment is (jobs/environments.py)


def cmd_reproduce(client: Client, args: argparse.Namespace) -> int:
    job = client.json("GET", job_path(args.id))
    attempt = _attempt(job, args.attempt)
    number, card = attempt["number"], attempt.get("card") or {}
    if args.server:
        answer = client.json("POST", job_path(args.id, f"attempts/{number}/reproduce"))
        if args.json:
            out_json(answer)
        else:
            out(clean(f"{args.id} attempt {answer['attempt']} reproduces attempt {number}"))
            for missing in answer.get("unavailable", []):
                out(clean(f"  cannot be had again: {missing}"))
        return 0
    directory = Path(args.dir or f"agenthub-{args.id}-{number}").absolute()
    at = attempt.get("result_commit") if args.at == "result" else card.get("start_commit")
    if not at:
        raise CliError(f"attempt {number} has no {args.at} commit to check out", code=1)
    _checkout(client, f"{job_path(args.id)}/attempts/{number}/bundle", directory, at)
    report: dict[str, Any] = {"workspace": str(directory), "commit": at, "image": None}
    if card.get("backend") != "docker":
        ran_on = ", ".join(f"{k} {v}" for k, v in sorted((card.get("host_tools") or {}).items()))
        report["note"] = (
            f"attempt {number} ran on {card.get('backend')}"
            + (f" ({ran_on})" if ran_on else "")
            + f", not in an image: `agenthub reproduce {args.id} --server` runs it again there"
        )
    else:
        report["image"] = _load_image(client, f"{job_path(args.id)}/attempts/{number}/image")
        report["command"] = docker_command(report["image"], directory, attempt, args.command)
    if args.json:
        out_json(report)
    else:
        out(clean(f"workspace: {directory} at {at}"))
        out(clean(report.get("note") or f"image:     {report['image']}"))
        if "command" in report:
            out(shlex.join(report["command"]))
    if args.run and "command" in report:
        return subprocess.call(report["command"])
    return 0


def docker_command(
    image: str, directory: Path, attempt: dict[str, Any], command: list[str]
) -> list[str]:
    """A shell (or `command`) in the image with the workspace mounted where the agent had it,
    its environment active, as the sandbox ran it: no network."""
    run = ["docker", "run", "--rm", "--network", "none"]
    if not command and sys.stdin.isatty():
        run.append("-it")
    run += ["-v", f"{directory}:/workspace", "-w", "/workspace"]
    if attempt.get("environment"):
        run += ["-e", f"VIRTUAL_ENV={ENV_PATH}"]
        run += ["-e", f"PATH={ENV_PATH}/bin:/usr/local/bin:/usr/bin:/bin"]
    return [*run, image, *(command or ["bash"])]


def _attempt(job: dict[str, Any], number: int | None) -> dict[str, Any]:
    attempts = job.get("attempts") or []
    for attempt in reversed(attempts):
        if number is None or attempt["number"] == number:
            return dict(attempt)
    raise CliError(f"job {job.get('id')} has no attempt {number}", code=1)


def _checkout(client: Client, path: str, directory: Path, commit: str) -> None:
    if directory.exists():
        raise CliError(f"{directory} exists already: give another --dir", code=1)
    with tempfile.NamedTemporaryFile(suffix=".bundle") as bundle:
        client.download(path, bundle.write)
        bundle.flush()
        _git(["init", "-q", str(directory)])
        _git(["-C", str(directory), "fetch", "-q", bundle.name, "+refs/*:refs/bundle/*"])
        _git(["-C", str(directory), "checkout", "-q", "--detach", commit])


def _load_image(client: Client, path: str) -> str:
    """Stream the image into `docker load`; the name it loaded."""
    try:
        loader = subprocess.Popen(
            ["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
        )
    except OSError as exc:
        raise CliError(f"cannot run docker: {exc}", code=1) from None
    assert loader.stdin is not None and loader.stdout is not None
    try:
        headers = client.download(path, loader.stdin.write)
    finally:
        loader.stdin.close()
    said = loader.stdout.read().decode(errors="replace")
    if loader.wait() != 0:
        raise CliError(f"docker load failed: {said.strip()}", code=1)
    loaded = [line.split(":", 1)[1].strip() for line in said.splitlines() if "image:" in line]
    return headers.get("X-Image") or (loaded[-1] if loaded else "")


def _git(args: list[str]) -> None:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CliError(f"git {args[0]} failed: {done.stderr.strip()}", code=1)
