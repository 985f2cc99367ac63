"""A repository's environment: what its setup script (or, without one, what its checkout
obviously needs) installs once, cached and reused by later attempts.

An environment is a Python virtualenv at ENV_PATH inside the sandbox (`python`, `python3` and
`pip` resolve to it; the sandbox's own tools, pytest and bandit, stay importable behind the
project's packages). Setup runs in the attempt's sandbox before the agent, with the package
registries as its only egress and the repository's secrets, into a directory of its own that
becomes the environment once the script succeeded. Later attempts mount it read-only at the
same path, so an editable install (`pip install -e .`) points at whichever checkout is mounted at
/workspace. Its key names what it was made from: the repository and its rebuild generation, the
sandbox image (docker) or the host's Python (bwrap), the script, and the manifest and lock files
of the commit; change any of them and the next attempt sets up afresh. The maintenance script
runs in every attempt, after the environment is ready and before the agent, with it read-only.

Used by jobs.runner; retention removes environments unused for AGENTHUB_ENVIRONMENT_DAYS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from django.conf import settings

ENV_PATH = "/opt/env"
# The repository's package cache (pip, npm, uv), mounted writable in its setup and maintenance
# phases only: a rebuilt environment downloads only what changed.
CACHE_PATH = "/opt/cache"
CACHE_ENV = {
    "PIP_CACHE_DIR": f"{CACHE_PATH}/pip",
    "npm_config_cache": f"{CACHE_PATH}/npm",
    "UV_CACHE_DIR": f"{CACHE_PATH}/uv",
}
SETUP_FILE = "/run/agenthub/setup.sh"
# Inside the environment: the files its setup generated in the checkout that git ignores.
CHECKOUT_FILES = f"{ENV_PATH}/.checkout"
MAINTENANCE_FILE = "/run/agenthub/maintenance.sh"
# Files at the top of the checkout whose content decides what the environment holds.
MANIFESTS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "test-requirements.txt",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
)
TEST_EXTRAS = ("test", "tests", "testing", "dev")


@dataclass(frozen=True)
class Plan:
    """What an attempt's environment is made of, and where it is kept once made."""

    key: str
    setup: str  # the script run once for the key
    maintenance: str  # run in every attempt
    detected: str  # what was detected when the repository sets no script; "" otherwise

    @property
    def directory(self) -> Path:
        return root() / self.key

    @property
    def ready(self) -> bool:
        return self.directory.is_dir()

    def card(self, *, reused: bool, setup_seconds: float | None) -> dict[str, Any]:
        return {
            "key": self.key,
            "reused": reused,
            "setup_seconds": None if setup_seconds is None else round(setup_seconds, 2),
            "path": ENV_PATH,
            **({"detected": self.detected} if self.detected else {}),
        }


def root() -> Path:
    return Path(settings.AGENTHUB_DATA_DIR) / "environments"


def plan_for(repository: Any, store: Path, commit: str, made_by: str) -> Plan | None:
    """The environment of an attempt on `commit`, or None when there is nothing to set up.
    `made_by` names what runs it: the docker image's ID, or the host's Python for bwrap."""
    manifests = _manifests(store, commit)
    setup, detected = repository.setup_script.strip(), ""
    if not setup:
        setup, detected = detect(manifests)
    if not setup:
        return None
    identity = {
        "repository": repository.pk,
        "generation": repository.environment_generation,
        "made_by": made_by,
        "setup": setup,
        "manifests": {path: str(blob.id) for path, blob in manifests.items()},
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Plan(digest[:24], setup, repository.maintenance_script.strip(), detected)


def _manifests(store: Path, commit: str) -> dict[str, pygit2.Blob]:
    tree = pygit2.Repository(str(store)).revparse_single(commit).peel(pygit2.Tree)
    found = {}
    for name in MANIFESTS:
        if name in tree and isinstance(blob := tree[name], pygit2.Blob):
            found[name] = blob
    return found


def detect(manifests: dict[str, pygit2.Blob]) -> tuple[str, str]:
    """A setup script for the common cases, and what it was made from."""
    if "pyproject.toml" in manifests or "setup.py" in manifests:
        extra = _test_extra(manifests.get("pyproject.toml"))
        target = f"'.[{extra}]'" if extra else "."
        script = f"pip install -e {target}"
        if "requirements.txt" in manifests:
            script = "pip install -r requirements.txt\n" + script
        told = f"pyproject.toml{f' (extra {extra})' if extra else ''}"
        return script, told if "pyproject.toml" in manifests else "setup.py"
    requirements = [name for name in manifests if name.endswith(".txt")]
    if requirements:
        return "\n".join(f"pip install -r {name}" for name in requirements), ", ".join(requirements)
    if "package.json" in manifests:
        if "package-lock.json" in manifests:
            return "npm ci", "package.json and package-lock.json"
        return "npm install", "package.json"
    return "", ""


def _test_extra(pyproject: pygit2.Blob | None) -> str:
    if pyproject is None:
        return ""
    try:
        extras = tomllib.loads(pyproject.data.decode()).get("project", {})
        names = extras.get("optional-dependencies", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
        return ""
    return next((name for name in TEST_EXTRAS if name in names), "")


def package_cache(repository: Any, uid: int) -> Path:
    """The repository's package cache (AGENTHUB_PACKAGE_CACHE_DIR/<team>/<repository>), handed
    to the phase's uid: one per repository, so no team's setup can plant a package another's
    installs."""
    cache = Path(settings.AGENTHUB_PACKAGE_CACHE_DIR) / repository.team.name / repository.name
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache.parent.chmod(0o700)
    if os.geteuid() == 0:
        for directory, names, files in os.walk(cache):
            for name in (*names, *files):
                os.lchown(os.path.join(directory, name), uid, uid)
        os.lchown(cache, uid, uid)
    return cache


def made_by(backend: str, image_id: str) -> str:
    """What makes an environment differ between machines: the docker image, or for bwrap the
    host's Python (the sandbox runs /usr/bin/python3), which an upgrade replaces."""
    if image_id:
        return image_id
    python = Path("/usr/bin/python3").resolve()
    stat = python.stat() if python.exists() else None
    return f"{backend}:{python}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}"


SETUP = "setup"
MAINTENANCE = "maintenance"


def phase_command(plan: Plan, phase: str) -> str:
    """The bash one phase runs before the agent, a folded section of the log: the setup (a new
    virtualenv, then the script) or the maintenance script, in the environment. The first
    failing step ends it and says which."""
    title = "environment setup" if phase == SETUP else "maintenance script"
    if phase == MAINTENANCE and not plan.maintenance:
        title = "checkout files from the environment"
    told = f"detected {plan.detected}" if plan.detected else "the repository's setup script"
    lines = [
        "set -eE",
        f'trap \'s=$?; echo "::error::{title} failed (exit $s) at: $BASH_COMMAND"; '
        "echo ::endgroup::' ERR",
        "echo " + shlex.quote(f"::group::{title}" + (f" ({told})" if phase == SETUP else "")),
    ]
    if phase == SETUP:
        lines += [
            f"python3 -m venv --without-pip --system-site-packages {ENV_PATH}",
            # pip itself comes from the system's site-packages, run by the environment's python.
            f"printf '#!/bin/sh\\nexec {ENV_PATH}/bin/python -m pip \"$@\"\\n' \\\n"
            f"  > {ENV_PATH}/bin/pip",
            f"chmod 755 {ENV_PATH}/bin/pip && ln -s pip {ENV_PATH}/bin/pip3",
            # The host tools (bwrap) behind the project's own packages, not in front of them.
            f'[ -z "${{PYTHONPATH:-}}" ] || echo "$PYTHONPATH" > "$({ENV_PATH}/bin/python -c '
            '\'import sysconfig; print(sysconfig.get_paths()["purelib"])\')/agenthub-tools.pth"',
        ]
    else:
        # What the setup left in its checkout that git ignores, back into this one (as the
        # sandbox's user, so a symlink in the repository leads nowhere outside it).
        lines.append(f"[ ! -d {CHECKOUT_FILES} ] || cp -a {CHECKOUT_FILES}/. /workspace/")
    lines += [f'export VIRTUAL_ENV={ENV_PATH} PATH="{ENV_PATH}/bin:$PATH"', "unset PYTHONPATH"]
    if phase == SETUP:
        lines += [
            f". {SETUP_FILE}",
            # What it left in the checkout that git ignores (a generated version file, built
            # extensions, node_modules) goes with the environment: every attempt's checkout
            # gets it back. What git would record stays out: it is not the agent's result.
            f"mkdir {CHECKOUT_FILES} && cd /workspace",
            "git -c core.fsmonitor=false ls-files -z --others --ignored --exclude-standard "
            f"| xargs -0 -r cp -a --parents -t {CHECKOUT_FILES} --",
        ]
    elif plan.maintenance:
        lines.append(f". {MAINTENANCE_FILE}")
    return "\n".join([*lines, "echo ::endgroup::"]) + "\n"


def has_checkout_files(plan: Plan) -> bool:
    """Whether the setup left ignored files that every attempt's checkout gets back."""
    kept = plan.directory / Path(CHECKOUT_FILES).name
    return kept.is_dir() and any(kept.iterdir())


def activated(env: dict[str, str]) -> dict[str, str]:
    """The agent's environment with the environment active (and the host tools behind it)."""
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    active = {**env, "VIRTUAL_ENV": ENV_PATH, "PATH": f"{ENV_PATH}/bin:{path}"}
    active.pop("PYTHONPATH", None)
    return active


def write_scripts(plan: Plan, workdir: Path) -> dict[str, Path]:
    """The scripts as files bound read-only into the sandbox (never pasted into a command)."""
    files = {}
    for inside, text in ((SETUP_FILE, plan.setup), (MAINTENANCE_FILE, plan.maintenance)):
        if text:
            files[inside] = workdir / Path(inside).name
            files[inside].write_text(text + "\n")
            files[inside].chmod(0o644)
    return files


def start_building(plan: Plan, attempt_id: int, uid: int) -> Path:
    """An empty directory for the setup to fill, the sandbox uid's while it runs."""
    root().mkdir(mode=0o700, parents=True, exist_ok=True)
    building = root() / f".build-{plan.key}-{attempt_id}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(building, uid, uid)
    return building


def keep(plan: Plan, building: Path) -> None:
    """The built directory becomes the environment: given back to the worker's user (later
    attempts only ever mount it read-only) and moved into place in one rename; when another
    attempt finished the same key first, its environment stays and this one is dropped."""
    if os.geteuid() == 0:
        for directory, names, files in os.walk(building):
            for name in (*names, *files):
                os.lchown(os.path.join(directory, name), 0, 0)
        os.lchown(building, 0, 0)
    try:
        building.rename(plan.directory)
    except OSError:
        discard(building)


def discard(building: Path) -> None:
    shutil.rmtree(building, ignore_errors=True)


def used(plan: Plan) -> None:
    """Marks the environment as used now, which retention reads."""
    os.utime(plan.directory)
