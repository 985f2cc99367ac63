"""The host tools the built-in agents use (ruff, and pytest/bandit for the sandbox's python3):
for bwrap, bound read-only under /opt/agenthub; for the local backend, found where they are.
Docker images bring their own. Every backend gets report.py, which turns the checks' reports
into their `::summary::` (jobs/sandbox/report.py). Used by jobs.runner for each attempt and by
the start-up check.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

TOOLS_DIR = "/opt/agenthub"
REPORT = Path(__file__).with_name("report.py")


def host_tools(backend: str) -> tuple[dict[str, Path], dict[str, str]]:
    """The files to bind read-only (sandbox path -> host path), and the environment that finds
    them."""
    # $AGENTHUB_REPORT names it (the local backend maps it to the host path).
    report = {f"{TOOLS_DIR}/report.py": REPORT}
    report_env = {"AGENTHUB_REPORT": f"{TOOLS_DIR}/report.py"}
    if backend == "docker":
        return report, report_env
    bin_dir = Path(sys.executable).parent
    files = {
        **report,
        f"{TOOLS_DIR}/bin/ruff": (bin_dir / "ruff").resolve(),
        f"{TOOLS_DIR}/python": Path(sysconfig.get_paths()["purelib"]),
    }
    path = f"{bin_dir if backend == 'local' else TOOLS_DIR + '/bin'}:/usr/local/bin:/usr/bin:/bin"
    return files, {"PATH": path, "PYTHONPATH": f"{TOOLS_DIR}/python", **report_env}
