"""Every page of the app, as a reviewer and as staff, at a desktop's 1440×900 and a phone's
390×844: axe-core (the npm package, injected into the page) finds no serious or critical
WCAG violation, each page has one h1 and skips no heading level, and no page scrolls
sideways."""

from __future__ import annotations

import subprocess
from pathlib import Path

import platformdirs
import pytest
from playwright.sync_api import Page

from jobs import services
from tests.conftest import _member, job_status, wait_for

pytestmark = pytest.mark.slow

AXE_VERSION = "4.14.1"
VIEWPORTS = ({"width": 1440, "height": 900}, {"width": 390, "height": 844})
CHECK = """async () => {
  const found = await axe.run(document, {resultTypes: ["violations"]});
  return found.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


# One h1, and no heading level skipped on the way down (axe counts these as moderate only).
HEADINGS = """() => {
  const levels = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
    .map((h) => Number(h.tagName[1]));
  const ones = levels.filter((level) => level === 1).length;
  const found = ones === 1 ? [] : [`${ones} h1`];
  levels.forEach((level, n) => {
    if (n && level > levels[n - 1] + 1) found.push(`h${levels[n - 1]} then h${level}`);
  });
  return found;
}"""
# What sticks out past the right edge (to name it in the failure).
WIDEST = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 3).map((e) => `${e.tagName.toLowerCase()}.${e.className}`).join(", ")"""


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core from npm, pinned, kept in the user's cache between runs."""
    home = Path(platformdirs.user_cache_dir("agenthub-tests")) / f"axe-core-{AXE_VERSION}"
    script = home / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-save",
                "--prefix",
                str(home),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
        )
    return script.read_text()


def problems(page: Page, axe: str, path: str) -> list[str]:
    found = []
    for viewport in VIEWPORTS:
        page.set_viewport_size(viewport)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        page.add_script_tag(content=axe)
        found += [f"{path} at {viewport['width']} px: {v}" for v in page.evaluate(CHECK)]
        found += [f"{path}: {h}" for h in page.evaluate(HEADINGS)]
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > viewport["width"]:
            found.append(
                f"{path} at {viewport['width']} px is {width} px wide: {page.evaluate(WIDEST)}"
            )
    return found


def test_every_page_meets_wcag_aa_and_fits_a_phone(
    sign_in, alice, bob, team, repo, workers, axe_script
):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi > hi.txt")
    workers.start()
    wait_for(lambda: job_status(job.public_id) == "needs_review", what="a result to review")
    admin = _member("admin", team, "admin", is_staff=True)

    found = []
    reviewer = sign_in(bob, bypass_csp=True)  # axe is injected as an inline script
    for path in (
        "/",
        "/?status=merged",
        f"/jobs/{job.public_id}/",
        f"/jobs/{job.public_id}/review/",
        "/settings/tokens/",
        "/settings/notifications/",
        "/insights/",  # a member is told it is for staff
        "/jobs/nope/",
    ):
        found += problems(reviewer, axe_script, path)
    staff = sign_in(admin, bypass_csp=True)
    for path in ("/ops/", "/insights/", "/teams/", f"/teams/{team.name}/", "/settings/hooks/"):
        found += problems(staff, axe_script, path)
    assert found == []
