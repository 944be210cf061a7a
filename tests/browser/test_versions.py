"""Playwright is pinned to the release whose bundled Chromium matches Debian's: the two
majors must agree, or the driver may speak a protocol the installed browser does not."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import playwright
import pytest

from tests.browser.support import CHROMIUM

pytestmark = [pytest.mark.browser]


def debian_chromium_major() -> tuple[int, str]:
    out = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=60, check=True)
    found = re.search(r"Chromium (\d+)\.[\d.]+", out.stdout)
    assert found, f"cannot read a version from `{CHROMIUM} --version`: {out.stdout!r}"
    return int(found.group(1)), found.group(0)


def playwright_chromium_major() -> tuple[int, str]:
    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    entry = next(b for b in json.loads(browsers.read_text())["browsers"] if b["name"] == "chromium")
    return int(entry["browserVersion"].split(".")[0]), entry["browserVersion"]


def test_debian_chromium_and_playwright_agree_on_the_chromium_major() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make apt-deps does)")
    debian, debian_text = debian_chromium_major()
    bundled, bundled_text = playwright_chromium_major()
    assert debian == bundled, (
        f"versions drifted apart: Debian's {debian_text} ({CHROMIUM}) is major {debian}, but playwright "
        f"{version('playwright')} is built for Chromium {bundled_text} (major {bundled}). Pin the playwright "
        f"release whose bundled Chromium is {debian} in pyproject.toml, or upgrade Debian's chromium."
    )
