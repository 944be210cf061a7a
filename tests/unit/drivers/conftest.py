"""The site configuration fixture of the site tests, for the drivers' tests too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.site.conftest import site_toml


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return site_toml(tmp_path)
