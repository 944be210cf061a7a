"""The driver contract: one set of behaviours every VM-provisioner driver must show, run on
each through the real site tool (`pragma --json` over a site configured with that driver;
see harness.py). A frontend and a compute boot from a repository image; `list` reports each
node as the back-end has it; the frontend holds the user's key and its contextualization;
booting again is a no-op; a failure half way leaves nothing; shutdown and clean are
idempotent and leave nothing; an unknown cluster lists empty; ENT is done or refused
clearly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from pcc.common.errors import UnsupportedError
from pcc.drivers.base import FEATURE_ENT, EntRequest
from pcc.site.service import BootRequest
from tests.integration.drivers.harness import HALFWAY, Harness

pytestmark = [pytest.mark.slow]

CLUSTER = "contract"
XML = etree.XMLParser(resolve_entities=False, no_network=True)


def boot(harness: Harness, key: Path, cluster: str, computes: int = 1) -> tuple[int, dict[str, Any]]:
    return harness.pragma("boot", harness.image, str(computes), f"key={key}", f"cluster={cluster}")


def nodes(harness: Harness, cluster: str) -> dict[str, dict[str, Any]]:
    code, doc = harness.pragma("list", "cluster", cluster)
    assert code == 0, doc
    return {n["name"]: n for n in doc["result"]}


@pytest.fixture(scope="module")
def booted(harness: Harness, user_key: tuple[Path, Path]) -> Iterator[dict[str, Any]]:
    code, doc = boot(harness, user_key[1], CLUSTER)
    assert code == 0, doc
    try:
        yield doc["result"]
    finally:
        harness.pragma("clean", CLUSTER)


def test_a_frontend_and_a_compute_boot_and_list_as_the_back_end_reports_them(
    harness: Harness, booted: dict[str, Any]
) -> None:
    found = nodes(harness, CLUSTER)
    front, compute = f"{CLUSTER}-frontend", f"{CLUSTER}-compute-0"
    assert set(found) == {front, compute}, found
    assert (found[front]["role"], found[compute]["role"]) == ("frontend", "compute")
    for node in found.values():
        assert node["state"] == "running", node
        assert node["cluster"] == CLUSTER and node["vcpus"] >= 1 and node["memory_mib"] > 0, node
    assert found[compute]["private_ip"], found[compute]
    # The frontend is reachable: an address of its own, or the site's with a port.
    assert found[front]["public_ip"], found[front]
    assert [n["name"] for n in booted["nodes"]] == [front, compute]


def test_the_frontend_holds_the_users_key_and_the_clusters_description(
    harness: Harness, booted: dict[str, Any], user_key: tuple[Path, Path]
) -> None:
    user_data, vc_out = harness.context_of(CLUSTER, f"{CLUSTER}-frontend")
    key = user_key[1].read_text().split()[1]
    assert user_data.startswith("#cloud-config") and key in user_data
    described = etree.fromstring(vc_out.encode(), XML)
    compute = nodes(harness, CLUSTER)[f"{CLUSTER}-compute-0"]
    assert described.xpath(f"//*[@name='{CLUSTER}-compute-0']"), vc_out
    assert described.xpath(f"//*[@ip='{compute['private_ip']}']"), vc_out


def test_booting_an_existing_cluster_again_is_a_no_op(
    harness: Harness, booted: dict[str, Any], user_key: tuple[Path, Path]
) -> None:
    before = nodes(harness, CLUSTER)
    code, doc = boot(harness, user_key[1], CLUSTER)
    assert code == 0 and doc["result"]["message"] == "already booted", doc
    assert nodes(harness, CLUSTER).keys() == before.keys()


def test_an_unknown_cluster_lists_empty(harness: Harness) -> None:
    assert nodes(harness, "never-booted") == {}


def test_ent_is_done_where_the_back_end_can_and_refused_clearly_where_not(
    harness: Harness, user_key: tuple[Path, Path]
) -> None:
    svc = harness.service
    spec = svc.plan(
        BootRequest(harness.image, 1, user_key[1], cluster="ent"),
        svc.repository.image(harness.image),
        "0.0.0.0" if svc.config.network.mode == "bridge" else None,  # as boot's draft plan does
    )
    wants = dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, ent=(EntRequest("ent0", "172.16.0.0/24"),))
    )
    if FEATURE_ENT in type(svc.driver).features:
        svc.driver.validate(wants)
    else:
        assert not harness.supports_ent
        with pytest.raises(UnsupportedError, match="not supported at this site"):
            svc.driver.validate(wants)


def test_a_boot_that_fails_half_way_leaves_nothing_behind(
    harness: Harness, user_key: tuple[Path, Path]
) -> None:
    with harness.fail_after_first_node():
        code, doc = boot(harness, user_key[1], HALFWAY)
    assert code != 0 and doc["ok"] is False, doc
    assert harness.leftovers(HALFWAY) == []
    assert nodes(harness, HALFWAY) == {}


def test_shutdown_and_clean_are_idempotent_and_leave_nothing(
    harness: Harness, booted: dict[str, Any]
) -> None:
    for _ in range(2):
        code, doc = harness.pragma("shutdown", CLUSTER)
        assert code == 0, doc
    assert all(n["state"] in ("stopped", "unknown") for n in nodes(harness, CLUSTER).values())
    for _ in range(2):
        code, doc = harness.pragma("clean", CLUSTER)
        assert code == 0, doc
    assert harness.leftovers(CLUSTER) == []
    assert nodes(harness, CLUSTER) == {}
