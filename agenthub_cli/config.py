"""Where the CLI finds its server and token: flags, the environment, or the file `agenthub login`
saved."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from pathlib import Path

import platformdirs

from agenthub_cli.client import CliError

DEFAULT_URL = "http://localhost:8000"


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
