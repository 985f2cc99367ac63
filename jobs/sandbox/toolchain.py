"""The AI presets' CLIs, pinned, installed once from the package registries into a directory
that every attempt of either backend gets read-only at /opt/agenthub/toolchain.

`make agent-images` builds it (`python -m jobs.sandbox.toolchain`); it lives outside the
checkout and the data directory (AGENTHUB_TOOLCHAIN_DIR, by default the user's cache), one
subdirectory per set of pins, so any `make run` finds it and a change of pins builds anew
while the old one is reused when the pins come back. Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings

INSIDE = "/opt/agenthub/toolchain"
BIN = f"{INSIDE}/node_modules/.bin"
# npm packages, exact versions (../shared/AGENT-CLIS.md has what each needs to run headless).
NPM = {"@anthropic-ai/claude-code": "2.1.337"}


class Missing(Exception):
    """The toolchain has not been built here."""


def key() -> str:
    return hashlib.sha256(json.dumps(NPM, sort_keys=True).encode()).hexdigest()[:12]


def directory() -> Path:
    return Path(settings.AGENTHUB_TOOLCHAIN_DIR) / key()


def mounts() -> tuple[dict[str, Path], dict[str, str]]:
    """The directory to bind read-only and the versions for the card; Missing if not built."""
    found = directory()
    if not (found / "node_modules" / ".bin").is_dir():
        raise Missing(
            f"the AI presets' toolchain is not built ({found}): run `make agent-images` once"
        )
    return {INSIDE: found}, dict(NPM)


def build() -> Path:
    """Install the pins (about 10 s and 410 MB for Claude Code); reused when present."""
    target = directory()
    if (target / "node_modules" / ".bin").is_dir():
        print(f"toolchain {target} is built already (reused)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
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
        # The sandbox's uid is "others" to these files.
        subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
        work.chmod(0o755)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"toolchain built: {target} ({', '.join(f'{n} {v}' for n, v in NPM.items())})")
    return target


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agenthub.settings")
    django.setup()
    try:
        build()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"could not build the toolchain: {exc}")
