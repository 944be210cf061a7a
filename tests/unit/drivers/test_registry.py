"""The driver registry: built-ins by name, others through the `pcc.drivers` entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from pcc import drivers
from pcc.common.errors import ConfigError
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import Driver, SiteContext
from pcc.site import config
from pcc.site.service import SiteService

from .conftest import site_toml

DRIVER_MODULE = '''
"""An external driver package: nothing of PCC was edited to add it."""
from dataclasses import dataclass
from typing import Self

from pcc.drivers.base import CleanResult, Driver, DriverHealth, DriverSettings


@dataclass(frozen=True)
class AcmeSettings(DriverSettings):
    region: str = "moon"

    @classmethod
    def from_toml(cls, reader) -> Self:
        cls.reject_unknown(reader)
        return cls(region=reader.get("region", str, "moon"))


class AcmeDriver(Driver):
    name = "acme"
    features = frozenset({"public_address"})
    settings_type = AcmeSettings

    def create_cluster(self, spec, timeout, on_staged=None):
        return []

    def list_nodes(self, cluster=None):
        return []

    def shutdown(self, cluster):
        return 0

    def clean(self, cluster):
        return CleanResult()

    def check(self):
        return DriverHealth(True, f"acme in {self.settings.region}")


NotADriver = object
'''


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution installed on sys.path with a driver module and its entry points."""
    module = f"acme_pcc_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / "site-packages"
    dist = root / "acme_pcc_driver-1.0.dist-info"
    dist.mkdir(parents=True)
    (root / f"{module}.py").write_text(DRIVER_MODULE)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pcc-driver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [pcc.drivers]
            acme = {module}:AcmeDriver
            broken = {module}_missing:Nothing
            wrong = {module}:NotADriver
            libvirt = {module}:AcmeDriver
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    yield module
    sys.modules.pop(module, None)


def test_builtin_drivers_are_listed_without_being_imported() -> None:
    assert drivers.known()["libvirt"] == "pcc.drivers.libvirt:LibvirtDriver"


def test_a_driver_of_an_installed_distribution_is_found_through_its_entry_point(
    acme: str, site_file: Path
) -> None:
    assert drivers.known()["acme"] == f"{acme}:AcmeDriver"
    cls = drivers.driver_class("acme")
    assert issubclass(cls, Driver) and cls.__module__ == acme
    cfg = config.load(site_file)
    site = SiteContext(cfg.name, cfg.staging, cfg.network, cfg.path)
    driver = drivers.load_driver("acme", TomlReader(site_file, {"region": "mars"}, "driver.acme"), site)
    assert driver.check().message == "acme in mars"


def test_a_site_names_an_entry_point_driver_in_its_config(acme: str, tmp_path: Path) -> None:
    path = site_toml(tmp_path, **{'[driver]\nname = "libvirt"': '[driver]\nname = "acme"'})
    path.write_text(path.read_text() + '\n[driver.acme]\nregion = "venus"\n')
    svc = SiteService(config.load(path))
    assert svc.driver.name == "acme" and svc.check().driver["message"] == "acme in venus"


def test_a_builtin_name_is_not_taken_over_by_an_entry_point(acme: str) -> None:
    assert drivers.known()["libvirt"] == "pcc.drivers.libvirt:LibvirtDriver"
    assert drivers.driver_class("libvirt").__module__ == "pcc.drivers.libvirt.driver"


def test_unknown_names_list_the_known_drivers(acme: str) -> None:
    known = ", ".join(sorted({"acme", "broken", "wrong", *drivers.BUILTIN}))
    assert "libvirt" in known and "ec2" in known
    with pytest.raises(drivers.UnknownDriver, match=rf"unknown driver 'xen'; known: {known}\Z"):
        drivers.driver_class("xen")


def test_entry_points_that_do_not_load_or_are_not_drivers_say_so(acme: str) -> None:
    with pytest.raises(drivers.UnknownDriver, match=r"driver 'broken' \(entry point .*\) cannot be loaded"):
        drivers.driver_class("broken")
    with pytest.raises(drivers.UnknownDriver, match=r"driver 'wrong' is .*not a subclass of"):
        drivers.driver_class("wrong")


def test_an_unknown_driver_in_the_site_config_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = site_toml(tmp_path, **{'[driver]\nname = "libvirt"': '[driver]\nname = "xen"'})
    with pytest.raises(
        ConfigError, match=r"site\.toml: \[driver\] name: unknown driver 'xen'; known: .*libvirt"
    ):
        _ = SiteService(config.load(path)).driver
