"""Site configuration: the example loads; every mistake is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcc.common.errors import ConfigError
from pcc.site import config

from .conftest import REPO, site_toml


def test_the_shipped_example_loads(site_file: Path) -> None:
    cfg = config.load(site_file)
    assert (cfg.name, cfg.cpus, cfg.memory_mb, cfg.driver) == ("demo", 4, 2048, "libvirt")
    assert cfg.repository == REPO / "images" / "repository"
    assert cfg.network.mode == "user"
    assert cfg.network.forward_ports == (22000, 22099)
    assert cfg.driver_settings["domain_type"] == "qemu"


def test_the_config_is_found_by_flag_then_environment_then_default() -> None:
    assert config.locate("/a.toml", {"PRAGMA_CONFIG": "/b.toml"}) == Path("/a.toml")
    assert config.locate(None, {"PRAGMA_CONFIG": "/b.toml"}) == Path("/b.toml")
    assert config.locate(None, {}) == Path("/etc/pragma/site.toml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("cpus = 4 ", "cpus = -1 ", r"\[site\] cpus: must be > 0, got -1"),
        ("cpus = 4 ", 'cpus = "four" ', r"\[site\] cpus: expected int, got str"),
        ('name = "demo"', 'name = "Demo Site!"', r"\[site\] name: invalid site name"),
        ("reserve_cpus = 0", "reserve_cpus = 4", r"\[site\] reserve_cpus: must be less than cpus"),
        ('mode = "user"', 'mode = "nat"', r"\[network\] mode: must be 'user' or 'bridge'"),
        (
            'forward_address = "127.0.0.1"',
            'forward_address = "10.0.0.1"',
            r"\[network\] forward_address: user mode forwards to a loopback address only",
        ),
        ('forward_ports = "22000-22099"', 'forward_ports = "80-90"', r"\[network\] forward_ports"),
        ('private_cidr = "10.1.0.0/24"', 'private_cidr = "10.1.0.0/33"', r"\[network\] private_cidr"),
        ('mode = "user"', 'mode = "bridge"', r"\[network\] public: missing table"),
        ('[driver]\nname = "libvirt"', "[driver]", r"\[driver\] name: missing"),
    ],
)
def test_mistakes_are_one_line_errors_naming_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = site_toml(tmp_path, **{old: new})
    with pytest.raises(ConfigError, match=message) as exc:
        config.load(path)
    assert str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_toml_syntax_errors_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="cannot read the site configuration"):
        config.load(tmp_path / "missing.toml")


def test_bridge_mode_reads_the_public_pool(tmp_path: Path) -> None:
    text = (REPO / "images" / "site.example.toml").read_text().replace('mode = "user"', 'mode = "bridge"')
    text = text.replace("# private_bridge", "private_bridge").replace(
        "# [network.public]", "[network.public]"
    )
    for key in ("range", "netmask", "gateway", "dns", "bridge"):
        text = text.replace(f"# {key} =", f"{key} =", 1)
    (tmp_path / "b.toml").write_text(text)
    cfg = config.load(tmp_path / "b.toml")
    assert cfg.network.public is not None
    assert cfg.network.public.addresses[0] == "192.0.2.10" and len(cfg.network.public.addresses) == 31
    assert (cfg.network.public.prefix, cfg.network.public.gateway) == (24, "192.0.2.1")
