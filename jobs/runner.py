"""Executes one attempt on a worker: shadow workspace, sandbox, output pump, result.

Used by jobs.tasks.run_attempt. The git and sandbox work lives in jobs.workspace and
jobs.sandbox; this module only sequences them and reports through jobs.services.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from egress import wiring
from egress.policy import Egress
from egress.proxy import Door
from gateway.models import Grant
from gateway.vault import Unopened
from jobs import activity, authorship, checkouts, environments, events, services, workspace
from jobs.models import Attempt, AttemptStatus
from jobs.sandbox import SandboxError, docker_available, get_backend, toolchain
from jobs.sandbox import image_id as sandbox_image_id
from jobs.sandbox.base import Backend, Limits, OutputLine, RunningSandbox, SandboxSpec
from jobs.sandbox.bwrap import host_versions
from jobs.sandbox.tools import host_tools

log = logging.getLogger(__name__)

# What programs print when an allocation fails under RLIMIT_AS (Python, C/glibc, C++, bash).
MEMORY_ERRORS = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory")
FLUSH_SECONDS = 0.25
FLUSH_EVENTS = 500
CANCEL_POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 3.0
# Sandboxed processes run as a host uid of their own, so limits and clean-up are per attempt.
SANDBOX_UID_BASE = 200_000
PROMPT_PATH = "/run/agenthub/prompt.txt"
REVIEW_PATH = "/run/agenthub/review.json"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(attempt_id: int) -> None:
    if not services.claim_attempt(attempt_id, worker_name()):
        log.info("attempt %s was already taken", attempt_id)
        return
    beat = Heartbeat(attempt_id)
    beat.start()
    workdir = settings.AGENTHUB_DATA_DIR / "attempts" / str(attempt_id)
    # A worker killed mid-attempt leaves its directory behind; this attempt starts afresh.
    checkouts.discard(workdir)
    try:
        _execute(attempt_id, workdir)
    except Exception as exc:
        log.exception("attempt %s failed inside AgentHub", attempt_id)
        services.finish_attempt(attempt_id, AttemptStatus.FAILED, reason=f"internal error: {exc}")
    finally:
        beat.stop()
        checkouts.discard(workdir)


def _write_inputs(attempt: Attempt, workdir: Path) -> dict[str, Path]:
    """The files the agent reads its task from, outside the workspace: the instruction this
    attempt was asked and, for a follow-up, the review it answers (JSON)."""
    files = {PROMPT_PATH: workdir / "prompt.txt"}
    files[PROMPT_PATH].write_text(attempt.asked)
    if attempt.review is not None:
        files[REVIEW_PATH] = workdir / "review.json"
        files[REVIEW_PATH].write_text(json.dumps(attempt.review.as_document(), indent=2))
    for path in files.values():
        path.chmod(0o644)
    return files


class _Refused(Exception):
    """The attempt cannot run here; the message ends it `failed`."""


def _execute(attempt_id: int, workdir: Path) -> None:
    services.follow_upstream(attempt_id)
    attempt = Attempt.objects.select_related(
        "job__agent", "job__repository", "job__submitter", "review__attempt", "review__reviewer"
    ).get(pk=attempt_id)
    agent = attempt.job.agent
    store = Path(attempt.job.repository.store_path)
    try:
        setup = _Setup.of(attempt, store, workdir)
    except _Refused as exc:
        services.finish_attempt(attempt_id, AttemptStatus.FAILED, reason=str(exc))
        return
    try:
        prepared = _prepare_environment(setup, store, workdir)
    except _Refused as exc:
        services.finish_attempt(attempt_id, AttemptStatus.FAILED, reason=str(exc))
        return
    if prepared is not None:
        services.finish_attempt(attempt_id, prepared[0], reason=prepared[1])
        return
    door = wiring.open_door(agent) if agent.provider or agent.egress != Egress.NONE else None
    try:
        spec = setup.spec(door)
        services.mark_running(attempt_id, setup.card(spec, door))
        try:
            proc = setup.backend.start(spec)
        except SandboxError as exc:
            services.finish_attempt(attempt_id, AttemptStatus.FAILED, reason=f"sandbox: {exc}")
            return
        secrets = [*agent.secrets.values(), setup.model_env.get("AGENTHUB_MODEL_TOKEN", "")]
        reading = Reading(events.Masker(secrets), agent.output_format, door)
        try:
            status, exit_code, reason = _run(attempt_id, proc, agent.timeout_seconds, reading)
        finally:
            proc.kill()  # idempotent; a container outlives its process tree otherwise
    finally:
        if door:
            door.stop()
    if status == AttemptStatus.FAILED and reason.startswith("out of memory"):
        reason = f"{reason} ({agent.memory_mb} MB)"
    _finish(attempt, store, setup.workspace, workdir, status, exit_code, reason, reading.summary)


@dataclass
class _Setup:
    """What an attempt's sandbox is made of, once its workspace and inputs are ready: the
    backend, the files and environment it gets (host tools, the AI toolchain, the model
    gateway's token), and how it becomes the spec and the card."""

    attempt: Attempt
    workspace: Path
    inputs: dict[str, Path]
    backend: Backend
    image: str
    built_from: str  # the docker image's ID; empty for the other backends
    tool_files: dict[str, Path]
    tool_env: dict[str, str]
    model_env: dict[str, str]
    versions: dict[str, str]
    # Set once the repository's environment is ready (jobs/environments.py), with its card.
    environment: environments.Plan | None = None
    environment_card: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe(self) -> dict[str, Any]:
        """For a reproduction (jobs/services/reproduce.py), what the original ran: its command,
        limits, backend and image win over the agent's current ones."""
        return dict(self.attempt.card.get("reproduces") or {})

    @property
    def command(self) -> str:
        return str(self.recipe.get("command") or self.attempt.job.agent.command)

    @classmethod
    def of(cls, attempt: Attempt, store: Path, workdir: Path) -> _Setup:
        job, agent = attempt.job, attempt.job.agent
        if isinstance(agent.secrets, Unopened):
            raise _Refused(f"the agent's secrets: {agent.secrets.reason}")
        ws = workdir / "workspace"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            prepared = _checkout(attempt, store, workdir)
        except workspace.GitError as exc:
            raise _Refused(f"could not prepare the workspace: {exc}") from None
        if prepared.note:
            events.append_events(attempt.pk, [events.Draft("notice", prepared.note)])
        inputs = _write_inputs(attempt, workdir)
        default = toolchain.image() if agent.provider else settings.AGENTHUB_SANDBOX_IMAGE
        recipe = attempt.card.get("reproduces") or {}
        image = recipe.get("image_id") or attempt.card.get("pinned_image") or agent.image or default
        try:
            backend = get_backend(
                _backend_name(
                    recipe.get("backend") or agent.backend or settings.AGENTHUB_SANDBOX, image
                ),
                allow_local=settings.AGENTHUB_ALLOW_LOCAL_SANDBOX,
            )
            built_from = sandbox_image_id(image) if backend.name == "docker" else ""
        except SandboxError as exc:
            raise _Refused(str(exc)) from None
        tool_files, tool_env = host_tools(backend.name)
        setup = cls(attempt, ws, inputs, backend, image, built_from, tool_files, tool_env, {}, {})
        if agent.provider:
            try:  # docker's image holds it
                if backend.name != "docker":
                    setup.tool_files = {**tool_files, **toolchain.mounts()}
            except toolchain.Missing as exc:
                raise _Refused(str(exc)) from None
            setup.versions = toolchain.versions_for(agent.command)
            path = tool_env.get("PATH", DEFAULT_PATH)
            setup.tool_env = {**tool_env, "PATH": f"{toolchain.PATH}:{path}"}
            setup.model_env = {
                "AGENTHUB_MODEL_TOKEN": Grant.issue(attempt),
                "AGENTHUB_MODEL": job.model or agent.model,
                # The gateway's door for the agent's provider: a preset whose agent is
                # switched to another provider (say openai-compatible) follows it.
                "AGENTHUB_MODEL_URL": f"{wiring.ENV['AGENTHUB_GATEWAY_URL']}/{agent.provider}",
            }
        return setup

    def spec(self, door: Door | None) -> SandboxSpec:
        attempt, agent = self.attempt, self.attempt.job.agent
        return SandboxSpec(
            workspace=self.workspace,
            command=wiring.prologue() + self.command if door else self.command,
            env={
                "AGENTHUB_JOB_ID": attempt.job.public_id,
                "AGENTHUB_ATTEMPT": str(attempt.number),
                "AGENTHUB_PROMPT": attempt.asked,
                "AGENTHUB_PROMPT_FILE": PROMPT_PATH,
                **({"AGENTHUB_REVIEW_FILE": REVIEW_PATH} if REVIEW_PATH in self.inputs else {}),
                **(environments.activated(self.tool_env) if self.environment else self.tool_env),
                **(wiring.environment() if door else {}),
                **self.model_env,
                **agent.secrets,
            },
            limits=(
                Limits(**self.recipe["limits"])
                if "limits" in self.recipe
                else Limits(agent.timeout_seconds, agent.cpus, agent.memory_mb, agent.max_processes)
            ),
            uid=_uid(attempt),
            ro_files={**self.inputs, **self.tool_files, **(wiring.files(door) if door else {})},
            dirs=(
                {environments.ENV_PATH: (self.environment.directory, False)}
                if self.environment
                else {}
            ),
            image=self.built_from,
            labels={
                "agenthub.job": attempt.job.public_id,
                "agenthub.attempt": str(attempt.pk),
                "agenthub.instance": settings.AGENTHUB_INSTANCE,
            },
        )

    def card(self, spec: SandboxSpec, door: Door | None) -> dict[str, Any]:
        """How the attempt ran, for the review page and for running it again the same way."""
        attempt, agent = self.attempt, self.attempt.job.agent
        return {
            "backend": self.backend.name,
            "command": self.command,
            "limits": asdict(spec.limits),
            "egress": agent.egress,
            **({"egress_allowlist": door.policy.describe()} if door else {}),
            "base_commit": attempt.base_commit,
            "start_commit": attempt.start_commit,
            "agent": agent.name,
            "agent_version": _config_hash(self.command, spec.limits, agent.egress),
            "worker": worker_name(),
            "uid": spec.uid,
            **({"host_tools": host_versions()} if not self.built_from else {}),
            **(
                {"reproduces": {k: self.recipe[k] for k in ("attempt", "unavailable")}}
                if self.recipe
                else {}
            ),
            **({"environment": self.environment_card} if self.environment_card else {}),
            **({"image": self.image, "image_id": self.built_from} if self.built_from else {}),
            **(
                {
                    "provider": agent.provider,
                    "model": self.model_env["AGENTHUB_MODEL"],
                    "versions": self.versions,
                }
                if agent.provider
                else {}
            ),
        }


# The setup's door: the package registries and nothing else (egress/policy.py).
SETUP_EGRESS = SimpleNamespace(egress=Egress.ALLOWLIST, egress_allowlist="registries")


def _prepare_environment(setup: _Setup, store: Path, workdir: Path) -> tuple[str, str] | None:
    """Make the repository's environment ready for the attempt (jobs/environments.py): set it up
    when its key is new, then run the maintenance script, each in a sandbox of its own before
    the agent's. Returns the attempt's status and reason when it cannot go on, else None."""
    attempt = setup.attempt
    repository = attempt.job.repository
    if setup.backend.name == "local":
        return None  # nothing is mounted there: no fixed path to keep an environment at
    made_by = environments.made_by(setup.backend.name, setup.built_from)
    plan = environments.plan_for(repository, store, attempt.start_commit, made_by)
    recorded = setup.recipe.get("environment_key", "")
    if recorded and environments.Plan(recorded, "", "", "").ready:
        # A reproduction runs in the very environment the original had, while it is kept.
        plan = environments.Plan(recorded, "", repository.maintenance_script.strip(), "")
    elif recorded and (plan is None or plan.key != recorded):
        note = f"environment {recorded} is gone; " + (
            f"set up again as {plan.key}" if plan else "the repository has none now"
        )
        events.append_events(attempt.pk, [events.Draft("warning", note)])
    if plan is None:
        return None
    secrets = repository.secrets
    if isinstance(secrets, Unopened):
        raise _Refused(f"the repository's secrets: {secrets.reason}")
    seconds = None
    if not plan.ready:
        started = time.monotonic()
        failed = _build_environment(setup, plan, secrets, store, workdir)
        if failed:
            return failed
        seconds = time.monotonic() - started
    if plan.maintenance or environments.has_checkout_files(plan):
        ended = _run_phase(setup, plan, environments.MAINTENANCE, secrets, workdir)
        if ended[0] != AttemptStatus.SUCCEEDED:
            return ended
    environments.used(plan)
    setup.environment = plan
    setup.environment_card = plan.card(reused=seconds is None, setup_seconds=seconds)
    return None


def _build_environment(
    setup: _Setup, plan: environments.Plan, secrets: dict[str, str], store: Path, workdir: Path
) -> tuple[str, str] | None:
    """The setup, on a checkout of its own at the same path: what it leaves in the checkout
    (an editable install's egg-info, a build directory) is not the agent's result."""
    attempt = setup.attempt
    building = environments.start_building(plan, attempt.pk, _uid(attempt))
    scratch = workdir / "setup"
    try:
        prepared = _checkout(attempt, store, scratch)
        status, reason = _run_phase(
            replace(setup, workspace=prepared.workspace),
            plan,
            environments.SETUP,
            secrets,
            workdir,
            building,
        )
    except BaseException:
        environments.discard(building)
        raise
    finally:
        checkouts.discard(scratch)
    if status != AttemptStatus.SUCCEEDED:
        environments.discard(building)
        return status, reason
    environments.keep(plan, building)
    return None


def _run_phase(
    setup: _Setup,
    plan: environments.Plan,
    phase: str,
    secrets: dict[str, str],
    workdir: Path,
    building: Path | None = None,
) -> tuple[str, str]:
    """One phase's sandbox: the agent's limits, the package registries as the only egress, the
    repository's secrets (the agent's own and the model's token stay out); the environment
    writable only while it is being built."""
    attempt = setup.attempt
    door = wiring.open_door(SETUP_EGRESS)
    try:
        base = setup.spec(door)
        spec = replace(
            base,
            workspace=setup.workspace,
            command=wiring.prologue() + environments.phase_command(plan, phase),
            env={
                "AGENTHUB_JOB_ID": attempt.job.public_id,
                "AGENTHUB_ATTEMPT": str(attempt.number),
                **setup.tool_env,
                **wiring.environment(),
                **environments.CACHE_ENV,
                **secrets,
            },
            limits=replace(base.limits, timeout_seconds=settings.AGENTHUB_SETUP_TIMEOUT),
            ro_files={
                **setup.tool_files,
                **wiring.files(door),
                **environments.write_scripts(plan, workdir),
            },
            dirs={
                environments.ENV_PATH: (building or plan.directory, building is not None),
                environments.CACHE_PATH: (
                    environments.package_cache(attempt.job.repository, _uid(attempt)),
                    True,
                ),
            },
        )
        try:
            proc = setup.backend.start(spec)
        except SandboxError as exc:
            return AttemptStatus.FAILED, f"{phase} failed: sandbox: {exc}"
        reading = Reading(events.Masker(secrets.values()), "text", door)
        try:
            status, _, reason = _run(attempt.pk, proc, settings.AGENTHUB_SETUP_TIMEOUT, reading)
        finally:
            proc.kill()
    finally:
        door.stop()
    if status in (AttemptStatus.SUCCEEDED, AttemptStatus.CANCELLED):
        return status, reason
    # The failing step, as the phase's ERR trap names it ("environment setup failed (exit 1)
    # at: pip install …"), else how the sandbox ended (a timeout).
    return AttemptStatus.FAILED, reading.last_error or f"{phase} failed: {reason}"


def _checkout(attempt: Attempt, store: Path, workdir: Path) -> checkouts.Prepared:
    """The attempt's start on its branch at `workdir`/workspace, layered over the cached
    checkout (jobs/checkouts.py)."""
    return checkouts.prepare(
        store,
        attempt.start_commit,
        attempt.branch,
        workdir,
        cache=settings.AGENTHUB_DATA_DIR / checkouts.DIR_NAME,
        uid=_uid(attempt),
    )


def _uid(attempt: Attempt) -> int:
    return SANDBOX_UID_BASE + attempt.pk % 100_000


def _backend_name(name: str, image: str) -> str:
    """'auto' is docker when an engine answers and has the image, else bwrap."""
    if name != "auto":
        return name
    if docker_available():
        try:
            sandbox_image_id(image)
            return "docker"
        except SandboxError:
            log.warning(
                "the Docker Engine has no image %s; using bwrap (make sandbox-image)", image
            )
    return "bwrap"


def _config_hash(command: str, limits: Limits, egress: str) -> str:
    """Names the agent's configuration as it ran, so a changed agent shows on the card."""
    config = json.dumps(
        {"command": command, "limits": asdict(limits), "egress": egress}, sort_keys=True
    )
    return hashlib.sha256(config.encode()).hexdigest()[:12]


class Reading:
    """What an attempt's run turns into events: its output lines (the log and workflow
    commands), an AI agent's activity read from them, and its door's connections."""

    def __init__(self, masker: events.Masker, output_format: str, door: Door | None) -> None:
        self.parser = events.OutputParser(masker)
        self.activity = activity.reader(output_format, masker)
        self.door = door
        self.check: dict[str, Any] = {}  # the last `::summary::` it printed (jobs/checks.py)
        self.last_error = ""  # the last `::error::` it printed, e.g. a setup step that failed

    def line(self, line: OutputLine) -> list[events.Draft]:
        drafts = [self.parser.feed(line.stream, line.text, line.ts)]
        if self.activity is not None and line.stream == "stdout":
            drafts += self.activity.drafts(line.text)
        for draft in drafts:
            if draft is not None and draft.kind == "summary":
                self.check = draft.data
            elif draft is not None and draft.kind == "error":
                self.last_error = draft.text
        return [draft for draft in drafts if draft is not None]

    def connections(self) -> list[events.Draft]:
        return [wiring.event(c) for c in self.door.reported()] if self.door else []

    @property
    def summary(self) -> dict[str, Any]:
        """What the agent said it did: an AI agent's closing message and counts, a check's
        result."""
        return {**(self.activity.final if self.activity else {}), **self.check}


def _run(
    attempt_id: int, proc: RunningSandbox, timeout: int, reading: Reading
) -> tuple[str, int | None, str]:
    writer = EventWriter(attempt_id)
    deadline = time.monotonic() + timeout
    next_cancel_check = 0.0
    try:
        while not proc.finished:
            for line in proc.read(timeout=0.1):
                writer.add(*reading.line(line))
            writer.add(*reading.connections())
            writer.flush_if_due()
            now = time.monotonic()
            if now > deadline:
                proc.kill()
                return _drained(
                    writer, reading, proc, AttemptStatus.TIMED_OUT, f"timed out after {timeout} s"
                )
            if now > next_cancel_check:
                next_cancel_check = now + CANCEL_POLL_SECONDS
                cancelled, budget = (
                    Attempt.objects.filter(pk=attempt_id)
                    .values_list("cancel_requested", "budget_exceeded")
                    .get()
                )
                if cancelled:
                    proc.kill()
                    return _drained(writer, reading, proc, AttemptStatus.CANCELLED, "cancelled")
                if budget:
                    proc.kill()
                    reason = f"budget exceeded: {budget}"
                    return _drained(writer, reading, proc, AttemptStatus.FAILED, reason)
    except BaseException:
        proc.kill()
        raise
    exit_code = proc.wait()
    writer.add(*reading.connections())
    writer.flush()
    # An agent refused by the gateway often exits at once, before the next poll.
    budget = Attempt.objects.filter(pk=attempt_id).values_list("budget_exceeded", flat=True).get()
    if budget:
        return AttemptStatus.FAILED, exit_code, f"budget exceeded: {budget}"
    if exit_code == 0:
        return AttemptStatus.SUCCEEDED, 0, ""
    if proc.oom_killed or writer.memory_error:
        return AttemptStatus.FAILED, exit_code, "out of memory: the agent hit its memory limit"
    return AttemptStatus.FAILED, exit_code, f"the agent exited with code {exit_code}"


def _drained(
    writer: EventWriter, reading: Reading, proc: RunningSandbox, status: str, reason: str
) -> tuple[str, int | None, str]:
    for line in proc.read(timeout=0.2):
        writer.add(*reading.line(line))
    writer.add(*reading.connections())
    writer.flush()
    return status, proc.poll(), reason


def _finish(
    attempt: Attempt,
    store: Path,
    ws: Path,
    workdir: Path,
    status: str,
    exit_code: int | None,
    reason: str,
    summary: dict[str, Any],
) -> None:
    """Commit whatever the agent left, even after a timeout or cancel (marked partial)."""
    skipped: list[str] = []
    commit = workspace.snapshot(
        store,
        ws,
        attempt.start_commit,
        attempt.branch,
        authorship.result_message(attempt.job, attempt),
        index_file=workdir / "index",
        identity=authorship.identity(),
        on_skipped=skipped.extend,
    )
    if skipped:
        note = f"left out of the result, git refuses these paths: {', '.join(skipped)}"
        events.append_events(attempt.pk, [events.Draft("warning", note)])

    result = workspace.diff(store, attempt.base_commit, commit) if commit else None
    if result is not None and not result.files:
        result, commit = None, None
    services.finish_attempt(
        attempt.pk,
        status,
        exit_code=exit_code,
        reason=reason,
        result=result,
        result_commit=commit or "",
        summary=summary,
    )


class EventWriter:
    """Batches drafts so a chatty agent costs one transaction per batch, not per line."""

    def __init__(self, attempt_id: int) -> None:
        self.attempt_id = attempt_id
        self.pending: list[events.Draft] = []
        self.last_flush = time.monotonic()
        self.logged_bytes = 0
        self.truncated = False
        # bwrap's memory limit is an rlimit: a process that hits it fails an allocation and says
        # so on stderr, where the kernel's OOM killer (docker) would have been reported instead.
        self.memory_error = False

    def add(self, *drafts: events.Draft) -> None:
        for draft in drafts:
            self._add(draft)

    def _add(self, draft: events.Draft) -> None:
        if draft.stream == "stderr" and MEMORY_ERRORS.search(draft.text):
            self.memory_error = True
        if draft.kind == "log":
            self.logged_bytes += len(draft.text)
            if self.logged_bytes > settings.AGENTHUB_MAX_LOG_BYTES:
                if not self.truncated:
                    self.truncated = True
                    limit = settings.AGENTHUB_MAX_LOG_BYTES
                    self.pending.append(
                        events.Draft("warning", f"output truncated after {limit} bytes")
                    )
                return
        self.pending.append(draft)
        if len(self.pending) >= FLUSH_EVENTS:
            self.flush()

    def flush_if_due(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        events.append_events(self.attempt_id, batch)
        progress = [d for d in batch if d.kind == "progress"]
        if progress:
            services.record_progress(
                self.attempt_id, progress[-1].data["percent"], progress[-1].text
            )


class Heartbeat(threading.Thread):
    """Proves to the reconciler that this attempt's worker is alive, through every phase."""

    def __init__(self, attempt_id: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{attempt_id}")
        self.attempt_id = attempt_id
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                services.heartbeat(self.attempt_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        close_old_connections()
