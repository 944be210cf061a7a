"""Site probes: how a `pragma check` answer becomes a health state and a collector ad."""

from __future__ import annotations

from pathlib import Path

from pcc.common.protocol import CheckReport
from pcc.controller.probes import DEGRADED, DOWN, UP, classify, site_ad
from pcc.controller.settings import SiteEntry

DOC = {
    "ok": True,
    "problems": [],
    "pragma_version": "0.1.0",
    "deployment_type": "libvirt",
    "ent_enabled": False,
    "cpus": {"total": 8, "reserved": 1, "used": 2, "free": 5},
    "memory_mb": {"total": 8192, "reserved": 0, "used": 256, "free": 7936},
    "repository": {"path": "/srv/repository", "images": ["tiny"]},
}
CHECK = CheckReport.from_doc(DOC)


def test_an_ok_check_is_up_a_check_with_problems_degraded_and_no_answer_down() -> None:
    assert classify("a", CHECK, "", 0.2, 1.0).health == UP
    degraded = classify(
        "a", CheckReport.from_doc({**DOC, "ok": False, "problems": ["driver: no libvirt"]}), "", 0.2, 1.0
    )
    assert (degraded.health, degraded.reason) == (DEGRADED, "driver: no libvirt")
    down = classify("a", None, "site a: cannot reach 127.0.0.4:2222", 5.0, 1.0)
    assert (down.health, down.reason) == (DOWN, "site a: cannot reach 127.0.0.4:2222")
    assert classify("a", CHECK, "", 0.2, 1.0).images == ["tiny"] and down.images is None


def test_site_ads_carry_health_capacity_version_and_probe_time() -> None:
    site = SiteEntry("a", "127.0.0.2", 22, "pragma", Path("/k"), Path("/kh"), 8, 8.0, "libvirt", False)
    ad = site_ad(site, classify("a", CHECK, "", 0.2, 1234.5))
    assert ad["MyType"] == "PccSite" and ad["Name"] == "a"
    assert (ad["PccHealth"], ad["PccFreeCpus"], ad["PccTotalCpus"], ad["PccFreeMemoryMb"]) == (
        "up",
        5,
        8,
        7936,
    )
    assert (ad["PccVersion"], ad["PccDeploymentType"], ad["PccEnt"], ad["PccLastProbe"]) == (
        "0.1.0",
        "libvirt",
        False,
        1234,
    )
