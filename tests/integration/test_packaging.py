"""`pip install .` gives a working install that carries its configuration and templates."""

from __future__ import annotations

import json
import os
import shutil
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
    # Built from a copy: setuptools reuses a checkout's build/ directory, whose stale files
    # (an older layout) would end up in the wheel.
    source = tmp_path_factory.mktemp("source") / "pcc"
    junk = shutil.ignore_patterns(".git", ".state", ".venv", "build", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(REPO, source, ignore=junk)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
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
        "pcc/drivers/libvirt/__init__.py",
        "pcc/cli/main.py",
        "pcc/jobs/main.py",
        "pcc/site/cli.py",
        "pcc/images/repository/vcdb.txt",
        "pcc/images/repository/tiny/vc-in.xml",
        "pcc/images/build_test_image.sh",
        "pcc/images/tiny/init",
        "pcc/api/routes.py",
        "pcc/web/pages.py",
        "pcc/web/static/vendor/README.md",
        "pcc/web/static/vendor/htmx-2.0.11/htmx.min.js",
        "pcc/web/static/vendor/htmx-2.0.11/LICENSE",
        "pcc/web/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js",
        "pcc/web/static/vendor/swagger-ui-5.35.0/LICENSE",
    ):
        assert path in names, path
    # Every package of the checkout is in the wheel: one missing from pyproject's list
    # imports in a checkout and fails in an install.
    for init in sorted(REPO.glob("pcc/**/__init__.py")) + sorted(REPO.glob("drivers/**/__init__.py")):
        rel = init.relative_to(REPO)
        name = rel.as_posix() if rel.parts[0] == "pcc" else f"pcc/{rel.as_posix()}"
        assert name in names, f"{rel}: add its package to [tool.setuptools] packages in pyproject.toml"
    # The page's templates and style ship too (the web page runs from a wheel).
    assert any(n.startswith("pcc/web/templates/") and n.endswith(".html") for n in names)
    assert "pcc/web/static/pcc.css" in names
    assert not any(n.endswith(("vmlinuz", "initrd.img")) for n in names)  # built at the demo, not shipped
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


def test_the_site_tool_runs_from_a_site_install_without_the_controllers_dependencies(
    wheel: Path, tmp_path: Path
) -> None:
    """`pip install 'pcc[site]'`: the wheel and lxml only, run by a Python that sees no other
    site-packages (`-S`), so a stray import of the controller's dependencies would fail."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), f"{wheel}[site]"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    heavy = (
        "htcondor2",
        "classad2",
        "paramiko",
        "apscheduler",
        "sqlite_utils",
        "prometheus_client",
        "libvirt",
    )
    assert not [name for name in heavy if (target / name).exists()]
    config = tmp_path / "site.toml"
    config.write_text(
        '[site]\nname = "s"\ncpus = 2\nmemory_mb = 512\n'
        f'[repository]\npath = "{REPO / "images" / "repository"}"\n'
        f'[staging]\npath = "{tmp_path / "staging"}"\n[driver]\nname = "libvirt"\n'
    )
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from pcc.site.cli import main; rc = main(['--json', '--config', sys.argv[2], 'list', 'repository']);"
        f"assert not [m for m in {heavy!r} if m in sys.modules]; sys.exit(rc)"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-S", "-c", code, str(target), str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] and {i["name"] for i in doc["result"]} == {"tiny", "tiny-legacy"}


def test_an_installed_wheels_demo_builds_its_image_in_the_state_directory(
    wheel: Path, tmp_path: Path
) -> None:
    """A wheel carries the sample repository and the image's build, not the built image: the
    demo copies the repository into the state directory and builds the image there once."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "cache").symlink_to(REPO / ".state" / "cache")  # the packages `make image` fetched
    code = (
        "import pathlib, sys; from pcc.dev import demo;"
        f"assert demo.REPOSITORY.is_relative_to(pathlib.Path(r'{target}'));"
        "print(demo.demo_repository(pathlib.Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    repository = Path(out.stdout.strip())
    assert repository == state / "demo" / "repository"
    assert (repository / "vcdb.txt").exists() and (repository / "tiny-legacy" / "vc-in.xml").exists()
    assert (repository / "tiny" / "initrd.img").stat().st_size > 1_000_000
