"""The AI presets' CLIs, pinned, installed once from the package registries into a directory
that AI attempts get read-only at /opt/agenthub/toolchain: the bwrap backend binds it, and the
docker backend runs them in an image holding it (agenthub-sandbox-agents:<pins hash>, the
sandbox image plus the directory), since a bind mount names a path of the worker's filesystem
that a Docker Engine elsewhere (compose's) does not have.

`make agent-images` builds both (`python -m jobs.sandbox.toolchain`); the directory lives
outside the checkout and the data directory (AGENTHUB_TOOLCHAIN_DIR, by default the user's
cache), one subdirectory per set of pins, so any `make run` finds it and a change of pins builds
anew while the old one is reused when the pins come back. Nothing is downloaded at run time.

Inside: `node_modules/.bin` (the npm CLIs and Node itself: Gemini CLI needs Node >= 20, more
than Debian 12 has), `python/` (the PyPI CLIs, for the sandbox's own Python) and `bin/` (a
launcher for each of those). Both directories of launchers go on the attempt's PATH.

OpenHands is the exception: its SDK needs Python 3.13 (Debian 13), so it is an image of its own,
agenthub-sandbox-openhands (docker/build-openhands-image.sh), which `make agent-images` builds
too where a Docker Engine runs; its pins are docker/openhands/requirements.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings

INSIDE = "/opt/agenthub/toolchain"
PATH = f"{INSIDE}/bin:{INSIDE}/node_modules/.bin"
# npm packages, exact versions (../shared/AGENT-CLIS.md has what each needs to run headless).
NPM = {
    "@anthropic-ai/claude-code": "2.1.337",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
    "node": "22.23.3",  # Node's own binary, from npm
}
# PyPI packages for the sandbox's Python (Debian 12's /usr/bin/python3 on either backend), each
# with the module its launcher runs.
SANDBOX_PYTHON = "3.11"
PYPI = {"aider-chat": "0.86.2"}
LAUNCHERS = {"aider": "aider"}
VERSIONS = {**NPM, **PYPI}
OPENHANDS_RECIPE = Path(__file__).resolve().parents[2] / "docker" / "openhands"
OPENHANDS_DRIVER = "/opt/agenthub/openhands/driver.py"


def _pins(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        name, found, version = line.partition("#")[0].strip().partition("==")
        if found:
            pins[name.strip()] = version.strip()
    return pins


OPENHANDS = _pins(OPENHANDS_RECIPE / "requirements.txt")
# The packages behind each command the toolchain offers, for the card.
COMMANDS = {
    "claude": ("@anthropic-ai/claude-code",),
    "codex": ("@openai/codex", "node"),
    "gemini": ("@google/gemini-cli", "node"),
    "aider": ("aider-chat",),
    "node": ("node",),
    OPENHANDS_DRIVER: tuple(OPENHANDS),
}


IMAGE = "agenthub-sandbox-agents"


class Missing(Exception):
    """The toolchain has not been built here."""


def key() -> str:
    pins = {"npm": NPM, "pypi": PYPI, "python": SANDBOX_PYTHON, "launchers": LAUNCHERS}
    return hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:12]


def directory() -> Path:
    return Path(settings.AGENTHUB_TOOLCHAIN_DIR) / key()


def image() -> str:
    """The docker backend's image for AI agents that name none."""
    return f"{IMAGE}:{key()}"


def _built(path: Path) -> bool:
    return (path / "node_modules" / ".bin").is_dir() and (path / "bin").is_dir()


def mounts() -> dict[str, Path]:
    """The directory to bind read-only; Missing if not built."""
    found = directory()
    if not _built(found):
        raise Missing(
            f"the AI presets' toolchain is not built ({found}): run `make agent-images` once"
        )
    return {INSIDE: found}


def versions_for(command: str) -> dict[str, str]:
    """For the card: the pinned versions of what an agent's command runs (all of them when it
    names none of the toolchain's commands, as a custom script may run any)."""
    used = {
        package
        for name, packages in COMMANDS.items()
        if re.search(rf"(?:^|[\s;&|(]){re.escape(name)}(?:$|\s)", command, re.MULTILINE)
        for package in packages
    }
    known = {**VERSIONS, **OPENHANDS}
    return {name: version for name, version in known.items() if name in used} or dict(VERSIONS)


def build() -> Path:
    """Install the pins (about a minute and 1.7 GB); reused when present."""
    target = directory()
    if _built(target):
        print(f"toolchain {target} is built already (reused)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _npm(work)
        _pypi(work)
        # The sandbox's uid is "others" to these files.
        subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
        work.chmod(0o755)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"toolchain built: {target} ({', '.join(f'{n} {v}' for n, v in VERSIONS.items())})")
    return target


def build_image() -> str:
    """The sandbox image with the directory in it; reused while both are unchanged (the label
    names the sandbox image it was built on). Sending 1.8 GB to the engine takes a while."""
    from jobs.sandbox.docker import image_id

    base = settings.AGENTHUB_SANDBOX_IMAGE
    base_id = image_id(base)
    tag = image()
    found = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "agenthub.base"}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0 and found.stdout.strip() == base_id:
        print(f"image {tag} is built already (reused)")
        return tag
    subprocess.run(
        ["docker", "build", "-q", "--force-rm", "--network", "none", "-t", tag]
        + ["--label", f"agenthub.base={base_id}", "-f", "-", str(directory())],
        input=f"FROM {base}\nCOPY . {INSIDE}\n",
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"image built: {tag} (on {base})")
    return tag


def _npm(work: Path) -> None:
    packages = [f"{name}@{version}" for name, version in NPM.items()]
    subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(work),
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            *packages,
        ],
        check=True,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )


def _pypi(work: Path) -> None:
    """Wheels for the sandbox's Python, not the host's: installed into a plain directory that
    the launchers put on PYTHONPATH (alone, so the host tools' packages cannot shadow them)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(work / "python"),
            "--python-version",
            SANDBOX_PYTHON,
            "--only-binary=:all:",
            "--no-warn-conflicts",  # it would compare with the host venv's packages
            *(f"{name}=={version}" for name, version in PYPI.items()),
        ],
        check=True,
    )
    (work / "bin").mkdir()
    for command, module in LAUNCHERS.items():
        launcher = work / "bin" / command
        launcher.write_text(
            f'#!/bin/sh\nPYTHONPATH={INSIDE}/python exec python3 -m {module} "$@"\n'
        )
        launcher.chmod(0o755)


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agenthub.settings")
    django.setup()
    try:
        build()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"could not build the toolchain: {exc}")
    from jobs.sandbox import SandboxError, docker_available

    if not docker_available():
        print("no Docker Engine answers: skipped the images (the bwrap toolchain is built)")
        sys.exit(0)
    try:
        build_image()
    except (SandboxError, subprocess.CalledProcessError) as exc:
        sys.exit(f"could not build the AI presets' image: {exc}")
    script = OPENHANDS_RECIPE.parent / "build-openhands-image.sh"
    if subprocess.run([str(script)], stdout=subprocess.DEVNULL, check=False).returncode:
        sys.exit(f"could not build the OpenHands image ({script})")
