"""Address allocation: persistent, idempotent per owner, and safe across processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from pcc.common.errors import CapacityError
from pcc.site.addresses import AddressPool

SLOTS = [f"192.0.2.{i}" for i in range(10, 20)]


def test_an_owner_gets_the_same_addresses_again_and_clean_returns_them(tmp_path: Path) -> None:
    pool = AddressPool(tmp_path / "alloc.json", SLOTS)
    first = pool.allocate("c1")
    assert pool.allocate("c1") == first
    assert pool.allocate("c2") != first
    assert json.loads((tmp_path / "alloc.json").read_text()) == {first[0]: "c1", SLOTS[1]: "c2"}
    assert pool.release("c1") == first
    assert pool.release("c1") == []
    assert pool.allocate("c3") == first


def test_an_exhausted_pool_is_a_capacity_error_and_holds_nothing(tmp_path: Path) -> None:
    pool = AddressPool(tmp_path / "alloc.json", SLOTS[:2])
    pool.allocate("a")
    with pytest.raises(CapacityError, match="all 2 in the pool are taken"):
        pool.allocate("b", count=2)
    assert pool.held_by("b") == []


def test_unusable_slots_are_skipped(tmp_path: Path) -> None:
    pool = AddressPool(tmp_path / "alloc.json", ["22000", "22001"])
    assert pool.allocate("a", usable=lambda slot: slot != "22000") == ["22001"]


def _grab(args: tuple[str, int]) -> list[str]:
    path, n = args
    pool = AddressPool(Path(path), [str(p) for p in range(30000, 30200)])
    return [pool.allocate(f"owner-{n}-{i}")[0] for i in range(10)]


def test_concurrent_processes_never_get_the_same_address(tmp_path: Path) -> None:
    path = str(tmp_path / "alloc.json")
    with multiprocessing.get_context("fork").Pool(8) as workers:
        results = workers.map(_grab, [(path, n) for n in range(16)])
    handed_out = [slot for chunk in results for slot in chunk]
    assert len(handed_out) == 160
    assert len(set(handed_out)) == 160
    assert len(json.loads(Path(path).read_text())) == 160
