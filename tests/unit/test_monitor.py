"""A site's monitor decides in pure functions: what each HOLD job's live attributes should
be after a poll, and the fewest batched edits that get them there."""

from __future__ import annotations

from typing import Any

from pcc.common.jobstate import PccState
from pcc.common.protocol import ClusterStatus, NodeInfo
from pcc.condor.adapter import JobStatus
from pcc.condor.monitors import RemoveMonitor, SubmitMonitor, decide_monitors
from pcc.jobs.monitor import (
    LOST_AFTER,
    Listing,
    MonitorState,
    hold_constraint,
    plan_edits,
    poll_once,
    wanted_status,
)


def node(cluster: str, name: str, state: str = "running", role: str = "compute") -> NodeInfo:
    return NodeInfo.from_doc(
        {"cluster": cluster, "name": name, "role": role, "state": state, "vcpus": 1, "memory_mib": 512}
    )


def cluster(name: str, up: int, total: int) -> ClusterStatus:
    nodes = [node(name, f"{name}-frontend", role="frontend")]
    nodes += [
        node(name, f"{name}-compute-{i}", "running" if i < up - 1 else "pending") for i in range(total - 1)
    ]
    return ClusterStatus(name, tuple(nodes))


def ad(cluster_id: int, rid: str, **attrs: Any) -> dict[str, Any]:
    return {"ClusterId": cluster_id, "ProcId": 0, "PccReservation": rid, "PccState": "booted", **attrs}


def test_a_cluster_in_the_listing_gives_its_counts_frontend_and_state() -> None:
    listing = Listing({"r1": cluster("r1", 2, 2)})
    wanted = wanted_status(ad(1, "r1"), listing, 0)
    assert wanted["PccState"] == PccState.RUNNING and wanted["PccNodesUp"] == wanted["PccNodesTotal"] == 2
    assert wanted["PccFrontend"] == "r1-frontend"
    assert list(wanted)[-1] == "PccState"


def test_a_site_that_does_not_answer_marks_every_cluster_unreachable_with_the_reason() -> None:
    listing = Listing(None, "site a: cannot reach 127.0.0.9:2222: refused")
    wanted = wanted_status(ad(1, "r1", PccState="running"), listing, 0)
    assert wanted == {
        "PccMessage": "site unreachable: site a: cannot reach 127.0.0.9:2222: refused",
        "PccState": PccState.UNREACHABLE,
    }


def test_a_cluster_missing_from_the_listing_is_lost_only_after_several_polls_in_a_row() -> None:
    state = MonitorState()
    ads = [ad(1, "r1", PccState="running")]
    empty = Listing({})
    seen = [wanted_status(ads[0], empty, state.count(ads, empty)["r1"]) for _ in range(LOST_AFTER)]
    assert seen[:-1] == [{}] * (LOST_AFTER - 1)
    assert seen[-1]["PccState"] == PccState.LOST
    # An answer with the cluster resets the count; an unreachable site does not count.
    assert state.count(ads, Listing({"r1": cluster("r1", 1, 1)})) == {"r1": 0}
    assert state.count(ads, Listing(None, "down")) == {"r1": 0}


def test_edits_are_batched_per_value_only_where_the_ad_differs_and_the_state_goes_last() -> None:
    ads = [
        ad(1, "r1", PccNodesUp=2, PccState="running"),
        ad(2, "r2", PccNodesUp=0),
        ad(3, "r3", PccNodesUp=0),
    ]
    wanted = {
        "1.0": {"PccNodesUp": 2, "PccState": "running"},  # nothing changed
        "2.0": {"PccNodesUp": 2, "PccState": "running"},
        "3.0": {"PccNodesUp": 2, "PccState": "running"},
    }
    assert plan_edits(ads, wanted) == [
        ("PccNodesUp", 2, ["2.0", "3.0"]),
        ("PccState", "running", ["2.0", "3.0"]),
    ]
    assert plan_edits(ads[:1], wanted) == []


class FakeSchedd:
    """Only for the pure plumbing of one poll: records queries and edits (the real schedd
    is in the integration tests)."""

    def __init__(self, ads: list[dict[str, Any]]) -> None:
        self.ads, self.edits = ads, []

    def query(self, constraint: str, projection: list[str]) -> list[dict[str, Any]]:
        return [dict(a) for a in self.ads]

    def edit(self, job: Any, attr: str, value: Any) -> int:
        self.edits.append((job, attr, value))
        for a in self.ads:
            if f"{a['ClusterId']}.{a['ProcId']}" in ([job] if isinstance(job, str) else job):
                a[attr] = value
        return 1


class Site:
    def __init__(self, clusters: dict[str, ClusterStatus] | None) -> None:
        self.clusters_ = clusters
        self.calls = 0

    def clusters(self) -> dict[str, ClusterStatus]:
        from pcc.common.errors import TemporaryError

        self.calls += 1
        if self.clusters_ is None:
            raise TemporaryError("site a: cannot reach it")
        return self.clusters_


def test_a_second_poll_with_nothing_new_writes_nothing() -> None:
    schedd = FakeSchedd([ad(1, "r1"), ad(2, "r2")])
    site = Site({"r1": cluster("r1", 2, 2), "r2": cluster("r2", 1, 2)})
    state = MonitorState()
    first = poll_once(schedd, site, "true", state)
    assert first.edits > 0 and first.reachable
    before = len(schedd.edits)
    assert poll_once(schedd, site, "true", state).edits == 0 and len(schedd.edits) == before
    site.clusters_ = None
    down = poll_once(schedd, site, "true", state)
    assert not down.reachable and {a["PccState"] for a in schedd.ads} == {"unreachable"}
    assert site.calls == 3  # one listing per poll for all of the site's clusters


def test_one_monitor_per_configured_site_and_a_changed_or_unconfigured_one_is_replaced() -> None:
    queued = [
        {"ClusterId": 5, "ProcId": 0, "PccSite": "a", "PccDigest": "d-a", "JobStatus": JobStatus.RUNNING},
        {"ClusterId": 6, "ProcId": 0, "PccSite": "b", "PccDigest": "old", "JobStatus": JobStatus.RUNNING},
        {"ClusterId": 7, "ProcId": 0, "PccSite": "gone", "PccDigest": "x", "JobStatus": JobStatus.IDLE},
        {"ClusterId": 8, "ProcId": 0, "PccSite": "a", "PccDigest": "d-a", "JobStatus": JobStatus.IDLE},
        {"ClusterId": 9, "ProcId": 0, "PccSite": "c", "PccDigest": "d-c", "JobStatus": JobStatus.REMOVED},
    ]
    actions = decide_monitors({"a": "d-a", "b": "d-b", "c": "d-c"}, queued)
    assert actions == [
        RemoveMonitor("6.0", "b", "site b's settings changed"),
        RemoveMonitor("7.0", "gone", "site gone is no longer configured"),
        RemoveMonitor("8.0", "a", "site a has another monitor"),
        SubmitMonitor("b"),
        SubmitMonitor("c"),
    ]
    assert decide_monitors({"a": "d-a"}, queued[:1]) == []


def test_the_hold_jobs_a_monitor_writes_are_its_controllers_at_its_site_still_on_hold() -> None:
    assert hold_constraint('/var/lib/p"cc', "a") == (
        'PccRole =?= "hold" && PccController =?= "/var/lib/p\\"cc" && PccSite =?= "a" && JobStatus == 5'
    )
