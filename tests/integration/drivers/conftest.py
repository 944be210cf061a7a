"""One harness per driver for the contract suite (each module-scoped: its servers start once)."""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcc.dev import demo
from tests.integration.drivers.harness import Harness

DRIVERS = ("libvirt", "ec2", "rocks", "opennebula", "simulated")


@pytest.fixture(scope="module", params=DRIVERS)
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    name = request.param
    if name == "libvirt":
        from tests.integration.drivers.harness_libvirt import make_libvirt_harness

        made = make_libvirt_harness(request.getfixturevalue("libvirt_site"))
    else:
        module = importlib.import_module(f"tests.integration.drivers.harness_{name}")
        made = getattr(module, f"make_{name}_harness")(tmp_path_factory.mktemp(f"harness-{name}"))
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="session")
def user_key() -> Iterator[tuple[Path, Path]]:
    """The scientist's key pair, the public half readable by a site account (pytest's own
    temporary directories are not)."""
    root = Path(tempfile.mkdtemp(prefix="pcc-user-key-"))
    root.chmod(0o755)
    private = root / "id_ed25519"
    demo.make_keypair(private, "scientist@lab")
    private.with_suffix(".pub").chmod(0o644)
    yield private, private.with_suffix(".pub")
    shutil.rmtree(root, ignore_errors=True)
