"""`make run` starts the ASGI server AGENTHUB_ASGI_SERVER names; nonsense is refused at start."""

from __future__ import annotations

import os
import subprocess
import sys

from agenthub.run import APP, server_command
from tests.conftest import ROOT


def test_uvicorn_and_daphne_are_started_on_the_address_asked_for():
    uvicorn = server_command("0.0.0.0", 8000, "uvicorn")  # noqa: S104
    assert uvicorn[1:4] == ["-m", "uvicorn", APP]
    assert uvicorn[uvicorn.index("--host") + 1 : uvicorn.index("--port") + 2] == [
        "0.0.0.0",  # noqa: S104
        "--port",
        "8000",
    ]
    daphne = server_command("127.0.0.1", 9000, "daphne")
    assert daphne[1:] == [
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        "9000",
        "agenthub.asgi:application",
    ]


def test_an_unknown_asgi_server_is_refused_naming_the_choices():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "AGENTHUB_ASGI_SERVER": "gunicorn"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "AGENTHUB_ASGI_SERVER='gunicorn': expected one of uvicorn, daphne" in done.stderr
