"""The real stack for browser tests: the ASGI server `make run` starts (agenthub/run.py) on a free
port against the pytest database, Debian's Chromium driven by Playwright, and users signed in
through the real login form.

The server is started once per session: it keeps no state of its own between requests (every
request opens its own database connection), so the flush between transactional tests is safe.
Each test gets fresh browser contexts, hence fresh sessions and sockets.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agenthub.run import server_command
from tests.conftest import ROOT, Workers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
# Job-driven waits (a worker claims, the sandbox runs, the result is committed) get this long.
JOB_TIMEOUT_MS = 30_000

# Records every websocket the page opens, so tests can wait for "connected" or "reconnected"
# as DOM conditions instead of sleeping. Init scripts are injected by the browser, not the page,
# so the strict Content-Security-Policy does not stop this one.
SOCKET_PROBE = """
(() => {
  const Native = window.WebSocket;
  const sockets = [];
  window.__e2eSockets = sockets;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const record = { url: String(url), state: "connecting", types: [], code: null };
      sockets.push(record);
      this.addEventListener("open", () => { record.state = "open"; });
      this.addEventListener("message", (event) => {
        record.types.push(JSON.parse(event.data).type);
      });
      this.addEventListener("close", (event) => {
        record.state = "closed";
        record.code = event.code;
      });
    }
  };
})();
"""


def wait_for_socket(page: Page, path: str, count: int = 1) -> None:
    """Wait until the page has opened `count` websockets to `path` and the last one is open.
    The consumers join their groups before accepting, so an open socket misses no update."""
    page.wait_for_function(
        """([path, count]) => {
            const found = window.__e2eSockets.filter((s) => s.url.includes(path));
            return found.length === count && found[count - 1].state === "open";
        }""",
        arg=[path, count],
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own server)
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def live_url(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the ASGI server `make run` starts, serving agenthub.asgi against the test
    database and Redis."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    # After django_db_setup, so Workers.env() names the test database, as the workers see it.
    env = Workers().env()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            server_command("127.0.0.1", port, settings.AGENTHUB_ASGI_SERVER),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/accounts/login/"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text()[-3000:]
                raise RuntimeError(f"the ASGI server did not come up:\n{tail}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API leaves its (idle) event loop registered as running in this
        # thread, and Django then refuses every ORM call, the fixtures' flush included. Nothing
        # runs on that loop while the test's code does, so the check only misfires here; the
        # module scope keeps the other test modules under Django's guard.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot() -> Callable[[Page, str], None]:
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def sign_in(
    browser: Browser, live_url: str, transactional_db: None
) -> Iterator[Callable[..., Page]]:
    """sign_in(user, bypass_csp=False) -> a page of a new browser context, signed in as the
    user through the login form and left on the dashboard with its live updates connected."""
    contexts = []

    def open_as(user: User, *, bypass_csp: bool = False) -> Page:
        context = browser.new_context(
            base_url=live_url, viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        context.add_init_script(SOCKET_PROBE)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", "pw")
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{live_url}/")
        wait_for_socket(page, "/ws/dashboard/")
        return page

    yield open_as
    for context in contexts:
        context.close()
