"""A valid site configuration on disk, built from the shipped example."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def site_toml(tmp_path: Path, **replace: str) -> Path:
    text = (REPO / "images" / "site.example.toml").read_text()
    text = text.replace('path = "repository"', f'path = "{REPO / "images" / "repository"}"')
    text = text.replace('path = "/var/lib/pragma/staging"', f'path = "{tmp_path / "staging"}"')
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return site_toml(tmp_path)
