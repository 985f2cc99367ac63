"""The `agenthub` client package stands alone: it imports nothing of Django or of the server, so it
can be installed without them (`agenthub-cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

SERVER = ("django", "agenthub", "jobs", "hooks", "notify")


def test_the_cli_and_the_mcp_server_import_nothing_of_django_or_the_server():
    script = (
        "import json, sys\n"
        "import agenthub_cli.main, agenthub_cli.mcp_server\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "agenthub_cli.mcp_server" in loaded
    server = [m for m in loaded if m.partition(".")[0] in SERVER]
    assert server == [], f"agenthub_cli imported {server}"
