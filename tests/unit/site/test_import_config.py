"""`pragma import-config`: pragma_boot's Python-syntax configuration read as data (never run)
and printed as a site TOML that `pcc.site.config.load` accepts. The fixtures in
tests/fixtures/pragma_boot are shaped like pragma_boot's etc/*.template files."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcc.common.errors import ConfigError
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.rocks import RocksSettings
from pcc.site import cli, config
from pcc.site.import_config import (
    HostFacts,
    ImportConfigError,
    Table,
    import_config,
    read_python_config,
    toml_document,
    toml_key,
    toml_string,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pragma_boot"
FACTS = HostFacts("sdsc", 48, 196608)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def relocated(tmp_path: Path, name: str) -> str:
    """A fixture whose site paths are under ``tmp_path`` (made, so the TOML loads as a site's)."""
    text = fixture(name)
    for old in ("/state/partition1", "/var/lib/one", "/var/tmp"):
        text = text.replace(old, str(tmp_path / old.strip("/").replace("/", "-")))
    for path in (
        "state-partition1/vm-images",
        "state-partition1/temp",
        "var-lib-one/pragma-images",
        "var-tmp/pragma",
    ):
        (tmp_path / path).mkdir(parents=True, exist_ok=True)
    return text


def loaded(tmp_path: Path, toml: str) -> config.SiteConfig:
    path = tmp_path / "etc" / "site.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml)
    return config.load(path)


# -- reading pragma_boot's files ---------------------------------------------------------------
def test_the_templates_are_read_as_data() -> None:
    site = read_python_config(fixture("site_conf.conf"), "site_conf.conf")
    assert site["site_ve_driver"] == "kvm_rocks" and site["temp_directory"] == "/state/partition1/temp"
    assert site["repository_settings"] == {
        "repository_class": "local",
        "repository_dir": "/state/partition1/vm-images",
        "vcdb_filename": "vcdb.txt",
    }
    rocks = read_python_config(fixture("kvm_rocks.conf"), "kvm_rocks.conf")
    assert rocks["vlans"] == list(range(4, 20))  # `range(4,20)`, read, not run
    assert rocks["public_ips"][0] == "198.51.100.50" and rocks["num_processors_reserved"] == 2
    assert "additional_interfaces" not in rocks  # commented out in the file
    one = read_python_config(fixture("opennebula.conf"), "opennebula.conf")
    assert one["PUBLIC_NETWORK_LEASES"]["203.0.113.210"] == "02:00:cb:00:71:d2"
    assert read_python_config('"""doc"""\nx: int = 3\nx = list(range(2, 5))\n', "f")["x"] == [2, 3, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = 1\nimport os\n", r"^f\.conf:2: only NAME = value lines are read, found an import"),
        ("a = 1\n\nb = __import__('os').system('touch /tmp/x')\n", r"^f\.conf:3: b: not a literal"),
        ("x = open('/tmp/pcc-import-config-was-run', 'w')\n", r"^f\.conf:1: x: not a literal"),
        ("a = b = 1\n", r"^f\.conf:1: only NAME = value lines"),
        ("a, b = 1, 2\n", r"^f\.conf:1: only NAME = value lines"),
        ("a = 1\na += 1\n", r"^f\.conf:2: .*found an augmented assignment"),
        ("def f():\n    pass\n", r"^f\.conf:1: .*found a function definition"),
        ("if True:\n    a = 1\n", r"^f\.conf:1: .*found an if statement"),
        ("print 'hello'\n", r"^f\.conf:1: not Python syntax"),
        ("mode = 0755\n", r"^f\.conf:1: not Python syntax"),
        ("vlans = range(4, n)\n", r"^f\.conf:1: vlans: range\(\) takes whole-number literals only"),
        ("vlans = range(0, 100000)\n", r"^f\.conf:1: vlans: range\(\) of more than 4096"),
        ("vlans = range(start=1)\n", r"^f\.conf:1: vlans: range\(\) takes one to three"),
        ("ips = [x for x in 'ab']\n", r"^f\.conf:1: ips: not a literal"),
        ("n = 2 ** 10\n", r"^f\.conf:1: n: not a literal"),
        ("x = " + "[" * 10000 + "]" * 10000 + "\n", r"^f\.conf(:1)?: "),  # the parser's own limit
    ],
)
def test_anything_but_plain_data_is_an_error_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ImportConfigError, match=message):
        read_python_config(text, "f.conf")
    assert not Path("/tmp/pcc-import-config-was-run").exists()


# -- the site TOML ---------------------------------------------------------------------------------
def test_a_rocks_site_becomes_a_site_toml_that_loads(tmp_path: Path) -> None:
    result = import_config(
        relocated(tmp_path, "site_conf.conf"),
        "site_conf.conf",
        fixture("kvm_rocks.conf"),
        "kvm_rocks.conf",
        FACTS,
    )
    cfg = loaded(tmp_path, result.toml)
    assert (cfg.name, cfg.deployment_type, cfg.cpus, cfg.memory_mb) == ("sdsc", "kvm_rocks", 48, 196608)
    assert cfg.reserve_cpus == 6  # 2 per container, 3 containers
    assert cfg.repository == tmp_path / "state-partition1" / "vm-images"
    assert cfg.staging == tmp_path / "state-partition1" / "temp"
    assert cfg.driver == "rocks"
    net = cfg.network
    assert net.mode == "bridge" and net.public is not None
    assert net.public.addresses == ("198.51.100.50", "198.51.100.51", "198.51.100.52", "198.51.100.53")
    assert (net.public.prefix, net.public.gateway, net.public.dns) == (24, "198.51.100.1", ("198.51.100.53",))
    rocks = RocksSettings.from_toml(TomlReader(cfg.path, cfg.driver_settings, "driver.rocks"))
    assert rocks.command == "/opt/rocks/bin/rocks" and rocks.vlans == tuple(range(4, 20))
    assert rocks.container_hosts == ("vm-container-0-0", "vm-container-0-1", "vm-container-0-2")
    assert rocks.disk_dir == Path("/export/kvm-disks")
    assert any("log_directory" in w for w in result.warnings)
    assert result.toml.startswith("# A PCC site configuration") and "# - log_directory" in result.toml


def test_an_opennebula_site_becomes_a_site_toml_without_its_password(tmp_path: Path) -> None:
    result = import_config(
        relocated(tmp_path, "site_conf_opennebula.conf"),
        "site_conf.conf",
        fixture("opennebula.conf"),
        "opennebula.conf",
        FACTS,
    )
    assert "not-a-real-password" not in result.toml
    cfg = loaded(tmp_path, result.toml)
    assert cfg.driver == "opennebula"
    assert dict(cfg.driver_settings) == {
        "endpoint": "http://one.example.org:2633/RPC2",
        "user": "oneadmin",
        "password_file": "opennebula-password",
        "public_network": "defaultpub",
        "private_vnet": {"VN_MAD": "bridge", "BRIDGE": "br0"},
    }
    assert cfg.network.public is not None
    assert cfg.network.public.addresses == ("203.0.113.209", "203.0.113.210", "203.0.113.211")
    assert cfg.network.private_bridge == "br0"
    assert any("guesses" in w for w in result.warnings) and any("DATASTORE_ID" in w for w in result.warnings)


def test_what_has_no_equivalent_is_a_warning_not_dropped(tmp_path: Path) -> None:
    result = import_config(
        relocated(tmp_path, "site_conf_clonezilla.conf"),
        "site_conf.conf",
        fixture("kvm_rocks.conf").replace('diskdir = "/export/kvm-disks"', 'diskdir = ""'),
        "kvm_rocks.conf",
        HostFacts("sdsc", 6, 4096, guessed=frozenset({"cpus", "memory_mb"})),
    )
    text = "\n".join(result.warnings)
    assert "repository_class 'clonezilla'" in text and "cziso, include_images, local_image_url" in text
    assert "vcdb_filename 'images.txt'" in text and "diskdir is empty" in text
    assert "[site] cpus and memory_mb: this host's" in text
    assert "num_processors_reserved: 6 CPUs reserved, [site] cpus is 6" in text
    assert loaded(tmp_path, result.toml).driver_settings.get("disk_dir") is None


@pytest.mark.parametrize(
    ("site_change", "driver_change", "message"),
    [
        (("'kvm_rocks'", "'cloudstack'"), None, r"site_ve_driver = 'cloudstack': PCC has no driver for it"),
        (("'repository_dir'", "'repo_dir'"), None, r"repository_settings: repository_dir is not set"),
        (None, ('"198.51.100.52"', '"198.51.100.60"'), r"public_ips: .* are not one contiguous block"),
        (None, ('gw="198.51.100.1"', ""), r"kvm_rocks\.conf: gw is not set"),
        (None, ('netmask = "255.255.255.0"', 'netmask = "255.0.255.0"'), r"netmask: '255\.0\.255\.0' is not"),
        (None, ("vlans= range(4,20)", "vlans = range(0, 3)"), r"vlans: VLAN ids are whole numbers within"),
        (None, ('dns="198.51.100.53"', 'dns="dns.example.org"'), r"dns: 'dns\.example\.org' is not an IP"),
    ],
)
def test_settings_the_site_toml_cannot_take_are_errors(
    site_change: tuple[str, str] | None, driver_change: tuple[str, str] | None, message: str
) -> None:
    site, driver = fixture("site_conf.conf"), fixture("kvm_rocks.conf")
    if site_change:
        site = site.replace(*site_change)
    if driver_change:
        driver = driver.replace(*driver_change)
    with pytest.raises(ImportConfigError, match=message):
        import_config(site, "site_conf.conf", driver, "kvm_rocks.conf", FACTS)


def test_the_driver_file_is_needed_and_the_site_name_checked() -> None:
    with pytest.raises(
        ImportConfigError, match=r"needs its driver file too: pragma import-config site_conf\.conf"
    ):
        import_config(fixture("site_conf.conf"), "site_conf.conf", None, None, FACTS)
    with pytest.raises(ImportConfigError, match="site name 'SDSC!'"):
        import_config(
            fixture("site_conf.conf"), "s", fixture("kvm_rocks.conf"), "k", HostFacts("SDSC!", 1, 1)
        )


# -- the TOML writer -------------------------------------------------------------------------------
def test_strings_keys_and_tables_are_written_as_toml_reads_them() -> None:
    text = toml_document(
        [
            Table(
                "a.b c", [("x y", 'q"uo\\te\n\ttab \x01 \x7f é ☃', "a # comment\nline"), ("n", [1, 2], "")]
            ),
            Table("t", [("inline", {"K-1": True, "k 2": 1.5}, ""), ("empty", "", "")]),
        ],
        ["header", "", "more"],
    )
    doc = tomllib.loads(text)
    assert doc["a"]["b c"] == {"x y": 'q"uo\\te\n\ttab \x01 \x7f é ☃', "n": [1, 2]}
    assert doc["t"] == {"inline": {"K-1": True, "k 2": 1.5}, "empty": ""}
    assert text.startswith("# header\n#\n# more\n") and "# a # comment line" in text
    assert toml_key("driver") == "driver" and toml_key("a.b") == '"a.b"'


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_any_string_round_trips(value: str) -> None:
    doc = tomllib.loads(f"k = {toml_string(value)}\n[t]\n{toml_key(value)} = 1\n")
    assert doc == {"k": value, "t": {value: 1}}


# -- the subcommand ------------------------------------------------------------------------------
def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_pragma_import_config_prints_the_toml(tmp_path: Path) -> None:
    site = tmp_path / "site_conf.conf"
    site.write_text(relocated(tmp_path, "site_conf.conf"))
    code, out = run("import-config", str(site), str(FIXTURES / "kvm_rocks.conf"), "name=sdsc", "cpus=16")
    assert code == 0
    cfg = loaded(tmp_path, out)
    assert (cfg.name, cfg.cpus, cfg.driver) == ("sdsc", 16, "rocks")
    assert "memory_mb" in out and "cpus: this host's" not in out
    code, out = run("--json", "import-config", str(site), str(FIXTURES / "kvm_rocks.conf"), "name=sdsc")
    doc = json.loads(out)
    assert code == 0 and doc["command"] == "import-config"
    assert tomllib.loads(doc["result"]["toml"])["site"]["name"] == "sdsc"
    assert any("memory_mb" in w for w in doc["result"]["warnings"])


def test_pragma_import_config_errors_are_configuration_errors(tmp_path: Path) -> None:
    bad = tmp_path / "site_conf.conf"
    bad.write_text("site_ve_driver = 'kvm_rocks'\nimport os\n")
    code, out = run("--json", "import-config", str(bad), str(FIXTURES / "kvm_rocks.conf"))
    doc = json.loads(out)
    assert code == cli.ExitStatus.CONFIG and doc["error"]["message"].startswith(f"{bad}:2: only NAME = value")
    code, _ = run("import-config", str(tmp_path / "missing.conf"))
    assert code == cli.ExitStatus.CONFIG
    with pytest.raises(ConfigError):
        cli._read_conf(tmp_path / "missing.conf")
