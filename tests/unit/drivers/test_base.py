"""The driver interface: features refuse what a back-end cannot do, settings are typed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pcc.common.errors import ConfigError, DriverError, UnsupportedError
from pcc.common.protocol import NodeInfo, NodeState
from pcc.common.tomlcfg import TomlReader
from pcc.drivers import base
from pcc.drivers.base import DriverSettings, EntRequest
from pcc.site import config
from pcc.site.service import BootRequest, SiteService

from .fakes import FakeDriver

KEY = "ssh-ed25519 AAAA1234 alice@lab"


def fake_service(site_file: Path, fail_create: bool = False) -> tuple[SiteService, FakeDriver]:
    cfg = config.load(site_file)
    driver = FakeDriver.without_features(cfg, fail_create)
    return SiteService(cfg, driver=driver), driver


def test_the_interface_speaks_the_protocol_values() -> None:
    assert base.NodeInfo is NodeInfo and base.NodeState is NodeState
    assert not hasattr(base, "NodePlan") and not hasattr(base, "NodeStatus")


def test_ent_from_a_driver_without_the_feature_is_unsupported_at_this_site(site_file: Path) -> None:
    svc, driver = fake_service(site_file)
    spec = svc.plan(BootRequest("tiny", 0, Path("/dev/null"), cluster="x"), svc.repository.image("tiny"))
    driver.validate(spec)  # no ENT wanted: fine
    wants_ent = replace(spec, network=replace(spec.network, ent=(EntRequest("ent0", "172.16.0.0/24"),)))
    with pytest.raises(UnsupportedError, match=r"ENT networks \(ent0\) are not supported at this site"):
        driver.validate(wants_ent)
    with pytest.raises(UnsupportedError, match="not supported at this site"):
        driver.create_cluster(wants_ent, timeout=1)
    wants_public = replace(spec, network=replace(spec.network, public_address="192.0.2.10"))
    with pytest.raises(UnsupportedError, match="public addresses for frontends are not supported"):
        driver.validate(wants_public)


def test_a_driver_without_settings_rejects_any(tmp_path: Path) -> None:
    reader = TomlReader(tmp_path / "site.toml", {"colour": "red"}, "driver.fake")
    with pytest.raises(ConfigError, match=r"site\.toml: \[driver\.fake\] colour: unknown setting"):
        DriverSettings.from_toml(reader)


def test_boot_is_idempotent_and_hands_the_driver_one_spec(site_file: Path, tmp_path: Path) -> None:
    svc, driver = fake_service(site_file)
    (tmp_path / "key.pub").write_text(KEY + "\n")
    req = BootRequest("tiny", 2, tmp_path / "key.pub", cluster="c1")
    first = svc.boot(req)
    assert first.message == "booted" and [n.name for n in first.nodes] == [
        "c1-frontend",
        "c1-compute-0",
        "c1-compute-1",
    ]
    assert first.staging_seconds is not None and first.boot_seconds is not None
    assert svc.boot(req).message == "already booted"
    (spec,) = driver.created
    assert spec.ssh_key == KEY and KEY in spec.documents["c1-frontend"].user_data


def test_a_boot_failing_half_way_is_cleaned_up(site_file: Path, tmp_path: Path) -> None:
    svc, driver = fake_service(site_file, fail_create=True)
    (tmp_path / "key.pub").write_text(KEY + "\n")
    with pytest.raises(DriverError, match="failed half-way"):
        svc.boot(BootRequest("tiny", 1, tmp_path / "key.pub", cluster="c2"))
    assert driver.cleaned == ["c2"] and driver.list_nodes("c2") == []
    result = svc.clean("c2")
    assert result.message == "nothing to clean" and result.to_doc()["removed_nodes"] == 0


def test_capacity_is_checked_before_the_driver_is_asked(site_file: Path, tmp_path: Path) -> None:
    svc, driver = fake_service(site_file)
    (tmp_path / "key.pub").write_text(KEY + "\n")
    with pytest.raises(Exception, match="not enough CPUs"):
        svc.boot(BootRequest("tiny", 64, tmp_path / "key.pub", cluster="big"))
    assert driver.created == [] and driver.cleaned == []
