"""What the browser tests share: Debian's Chromium and how it is launched, axe-core checks,
and screenshots of each page checked (under the run's output directory)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# What a browser under test needs, and nothing that talks to the network by itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
AXE = Axe()
SAVED: list[Path] = []  # this run's screenshots (the terminal summary names their directory)


def screenshot_dir() -> Path:
    """``$PCC_TEST_OUTPUT/screenshots`` if set, else the checkout's ``.state/test-output/screenshots``."""
    base = os.environ.get("PCC_TEST_OUTPUT")
    path = Path(base) / "screenshots" if base else REPO / ".state" / "test-output" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def assert_accessible(page: Page, what: str) -> None:
    """axe-core over the whole page: no violations at all (each is printed if any)."""
    results = AXE.run(page)
    if results.violations_count:
        report = results.generate_report()
        print(f"axe: {what}: {results.violations_count} violations\n{report}")
        pytest.fail(f"{what} ({page.url}): {results.violations_count} axe violations:\n{report}")


def shoot(page: Page, name: str, docs: str = "") -> Path:
    """Save a screenshot of the whole page as ``<name>.png`` under the run's output
    directory (printed); ``docs`` names its copy in docs/screenshots/ for the README,
    refreshed when ``$PCC_UPDATE_SCREENSHOTS`` is set (so a run leaves the checkout clean)."""
    path = screenshot_dir() / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    SAVED.append(path)
    if docs and os.environ.get("PCC_UPDATE_SCREENSHOTS"):
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / docs)
        print(f"screenshot for the README: {DOCS_SCREENSHOTS / docs}")
    return path


def audit(page: Page, name: str, docs: str = "") -> None:
    """A page as checked in every test: screenshot, then axe."""
    shoot(page, name, docs)
    assert_accessible(page, name)
