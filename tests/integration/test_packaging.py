"""`pip install .` gives a working install that carries its configuration and templates."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("pcc-*.whl")
    return whl


def test_the_wheel_carries_config_templates_drivers_and_console_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "pcc/condor_config/personal.conf",
        "pcc/condor_config/condor.lock",
        "pcc/condor_config/install_condor.py",
        "pcc/submit_templates/README.md",
        "pcc/drivers/__init__.py",
        "pcc/drivers/libvirt.py",
        "pcc/cli/main.py",
        "pcc/jobs/main.py",
        "pcc/site/cli.py",
    ):
        assert path in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("pcc = pcc.cli.main:main", "pcc-job = pcc.jobs.main:main", "pragma = pcc.site.cli:main"):
        assert script in text


def test_an_installed_wheel_renders_the_pool_config_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import pcc, pathlib; from pcc.condor.pool import PersonalPool;"
        f"assert pathlib.Path(pcc.__file__).is_relative_to(pathlib.Path(r'{target}'));"
        "print(PersonalPool(pathlib.Path('/p'), pathlib.Path('/l')).render_config())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert "RELEASE_DIR = /p/usr" in out.stdout
    help_out = subprocess.run(
        [sys.executable, "-m", "pcc.cli.main", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "condor" in help_out.stdout and "serve" in help_out.stdout
