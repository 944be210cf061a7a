"""The personal pool's configuration is rendered completely and stays on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcc.common.errors import PoolError
from pcc.condor.pool import PersonalPool


def render(tmp_path: Path, **settings: str) -> str:
    return PersonalPool(
        prefix=tmp_path / "prefix", local_dir=tmp_path / "local", settings=settings
    ).render_config()


def config_values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("use "):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_every_placeholder_is_filled(tmp_path: Path) -> None:
    text = render(tmp_path)
    assert "@{" not in text
    assert f"RELEASE_DIR = {tmp_path}/prefix/usr" in text
    assert f"LOCAL_DIR = {tmp_path}/local" in text


def test_no_system_configuration_is_read_and_daemons_stay_on_loopback(tmp_path: Path) -> None:
    values = config_values(render(tmp_path))
    assert values["LOCAL_CONFIG_FILE"] == "" and values["LOCAL_CONFIG_DIR"] == ""
    assert values["NETWORK_INTERFACE"] == "127.0.0.1"
    assert values["BIND_ALL_INTERFACES"] == "False"
    assert values["COLLECTOR_HOST"] == "$(CONDOR_HOST):0"  # a port the collector picks
    assert values["ETC"] == "$(LOCAL_DIR)/etc"


def test_settings_override_the_template_defaults(tmp_path: Path) -> None:
    values = config_values(render(tmp_path, num_cpus="8", max_local_jobs="500"))
    assert values["NUM_CPUS"] == "8"
    assert values["START_LOCAL_UNIVERSE"] == "TotalLocalJobsRunning < 500"


def test_extra_configuration_is_appended(tmp_path: Path) -> None:
    pool = PersonalPool(prefix=tmp_path, local_dir=tmp_path, extra_config="PCC_SITE_A_LIMIT = 4")
    assert pool.render_config().rstrip().endswith("PCC_SITE_A_LIMIT = 4")


def test_starting_a_pool_that_is_not_installed_says_how_to_install(tmp_path: Path) -> None:
    pool = PersonalPool(prefix=tmp_path / "nowhere", local_dir=tmp_path / "local")
    with pytest.raises(PoolError, match="make install"):
        pool.start()


def test_a_stopped_pool_reports_no_master(tmp_path: Path) -> None:
    pool = PersonalPool(prefix=tmp_path / "nowhere", local_dir=tmp_path / "local")
    assert pool.master_pid() is None
    assert pool.stop() is False


def test_dagman_strict_mode_is_relaxed_only_for_a_pool_under_tmp(tmp_path: Path) -> None:
    under_tmp = PersonalPool(prefix=tmp_path, local_dir=Path("/tmp/pcc-pool"))
    elsewhere = PersonalPool(prefix=tmp_path, local_dir=Path("/var/lib/pcc/condor/local"))
    assert config_values(under_tmp.render_config())["DAGMAN_USE_STRICT"] == "0"
    assert config_values(elsewhere.render_config())["DAGMAN_USE_STRICT"] == "1"


def test_a_pool_restart_brings_every_dagman_back_at_once(tmp_path: Path) -> None:
    values = config_values(render(tmp_path))
    assert values["SCHEDULER_UNIVERSE_COOL_DOWN_DURATION"] == "0"
    assert int(values["JOB_STOP_COUNT"]) >= 100
