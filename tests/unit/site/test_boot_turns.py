"""Boots at one site run side by side, up to its `[site] max_boots`; capacity is checked
one boot at a time and claimed until the nodes exist, so boots in flight never oversell it."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from pcc.common.errors import CapacityError
from pcc.common.locks import file_lock
from pcc.drivers.simulated import SimulatedDriver
from pcc.site.service import BootRequest, SiteService

from ..drivers.test_simulated import KEY, site


class Counting:
    """Wraps a driver's create_cluster to see how many run at once (the driver is real)."""

    def __init__(self, driver: SimulatedDriver) -> None:
        self.driver, self.running, self.most = driver, 0, 0
        self.lock = threading.Lock()
        self.inner = driver.create_cluster

    def __call__(self, *args: object, **kwargs: object) -> object:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.inner(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def boot_all(svc: SiteService, names: list[str], cpus: int = 0) -> dict[str, object]:
    key = svc.config.staging.parent / "key.pub"
    key.write_text(KEY + "\n")
    results: dict[str, object] = {}

    def one(name: str) -> None:
        try:
            results[name] = svc.boot(BootRequest("tiny", cpus, key, cluster=name))
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def with_max_boots(tmp_path: Path, max_boots: int, **table: object) -> SiteService:
    svc = site(tmp_path, **table)
    svc.config = dataclasses.replace(svc.config, max_boots=max_boots)
    return svc


def test_boots_run_side_by_side_up_to_max_boots_and_the_rest_wait_their_turn(tmp_path: Path) -> None:
    svc = with_max_boots(tmp_path, 2, boot_s=0.5, wait=True)
    counting = Counting(svc.driver)  # type: ignore[arg-type]
    svc.driver.create_cluster = counting  # type: ignore[method-assign]
    t0 = time.monotonic()
    results = boot_all(svc, ["c1", "c2", "c3", "c4"])
    took = time.monotonic() - t0
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert counting.most == 2
    assert took < 4 * 0.5 + 1.5  # not one at a time behind the site lock (that was 4 x boot_s)


def test_boots_in_flight_claim_capacity_so_two_at_once_cannot_oversell_the_site(tmp_path: Path) -> None:
    svc = with_max_boots(tmp_path, 4, boot_s=0.5, wait=True)
    # The sample site has 4 CPUs; a tiny frontend and 2 computes take 3, so two cannot fit.
    results = boot_all(svc, ["big1", "big2"], cpus=2)
    errors = [r for r in results.values() if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], CapacityError), results
    assert not list((svc.config.staging / "claims").glob("*.json"))  # claims end with their boots


def test_a_claim_left_by_a_boot_that_died_holds_nothing(tmp_path: Path) -> None:
    svc = with_max_boots(tmp_path, 4, boot_s=0.1, wait=True)
    claims = svc.config.staging / "claims"
    claims.mkdir(parents=True)
    (claims / "dead.json").write_text('{"cpus": 4, "memory_mib": 1024}')
    results = boot_all(svc, ["alive"], cpus=2)
    assert not isinstance(results["alive"], Exception), results
    assert not (claims / "dead.json").exists()


def test_a_claim_of_a_boot_still_running_holds_its_share(tmp_path: Path) -> None:
    svc = with_max_boots(tmp_path, 4, boot_s=0.1, wait=True)
    claims = svc.config.staging / "claims"
    claims.mkdir(parents=True)
    (claims / "busy.json").write_text('{"cpus": 4, "memory_mib": 1024}')
    with file_lock(svc.config.staging / "locks" / "busy.lock"):  # its boot holds its cluster lock
        results = boot_all(svc, ["late"], cpus=2)
    assert isinstance(results["late"], CapacityError), results
    assert "not enough CPUs" in str(results["late"])


@pytest.mark.parametrize("value", ["0", "-1", '"two"'])
def test_max_boots_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    from pcc.common.errors import ConfigError
    from pcc.site import config

    from .conftest import site_toml

    with pytest.raises(ConfigError, match="max_boots"):
        config.load(site_toml(tmp_path, **{"max_boots = 4": f"max_boots = {value}"}))
