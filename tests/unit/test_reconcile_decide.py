"""The reconcile loop's decisions, on what it observed in real runs (ClassAds recorded by
``python -m pcc.dev.record_ads`` from a real pool, an SSH site and a site that is down),
and the executor's order: a step that fails stops the steps after it."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pcc.common.errors import CondorError
from pcc.controller.model import TERMINAL, Allocation, Reservation, State
from pcc.controller.reconcile import (
    Action,
    AdoptDag,
    CopyStatus,
    EditEnd,
    Fail,
    Observation,
    Outcome,
    Reconciler,
    RemoveDag,
    RemoveJob,
    SubmitDag,
    Transition,
    WriteEnd,
    decide,
)
from pcc.controller.store import Store
from pcc.dev.record_ads import from_doc

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reconcile_observations.json"
RECORDED: dict[str, Any] = json.loads(FIXTURE.read_text())


def observed(label: str) -> Observation:
    return from_doc(RECORDED[label])


def states_after(obs: Observation, actions: list[Action]) -> dict[str, State]:
    """Each site's allocation state once the actions are applied."""
    state = {a.id: a.state for a in obs.res.allocations}
    for action in actions:
        if isinstance(action, Transition):
            state[action.alloc_id] = action.target
        elif isinstance(action, Fail):
            state[action.alloc_id] = State.FAILED
    return {a.site: state[a.id] for a in obs.res.allocations}


def test_every_recorded_stage_is_there() -> None:
    assert len(RECORDED) >= 11


def test_a_new_reservation_gets_its_dag_and_is_scheduled() -> None:
    obs = observed("new reservation, no DAG yet")
    actions = decide(obs)
    assert isinstance(actions[0], SubmitDag)
    assert states_after(obs, actions) == {"a": State.SCHEDULED}


def test_a_boot_waiting_for_its_time_needs_nothing() -> None:
    assert decide(observed("DAG submitted, boot waiting for its time")) == []


def test_a_running_boot_job_means_booting() -> None:
    obs = observed("boot running")
    actions = decide(obs)
    assert not any(isinstance(a, SubmitDag | AdoptDag) for a in actions)
    assert states_after(obs, actions) == {"a": State.BOOTING}


def test_a_boot_that_failed_its_last_attempt_fails_that_site_alone() -> None:
    obs = observed("boot failed on its last attempt")
    actions = decide(obs)
    after = states_after(obs, actions)
    assert after["c"] is State.FAILED and after["a"] not in TERMINAL
    fail = (
        next(a for a in actions if isinstance(a, Fail)) if any(isinstance(a, Fail) for a in actions) else None
    )
    if fail is not None:  # (it may have been recorded failed already by an earlier pass)
        assert fail.site == "c" and "127.0.0.4" in fail.reason


def test_a_hold_node_reporting_running_makes_the_allocation_running_with_its_login() -> None:
    obs = observed("HOLD waiting, cluster running")
    actions = decide(obs)
    assert states_after(obs, actions) == {"a": State.RUNNING}
    copied = [a for a in actions if isinstance(a, CopyStatus)]
    fields = (
        copied[0].fields
        if copied
        else {
            k: getattr(obs.res.allocations[0], k)
            for k in ("frontend", "public_ip", "nodes_up", "nodes_total")
        }
    )
    assert fields["nodes_up"] == fields["nodes_total"] == 2
    assert fields["frontend"] == f"{obs.res.id}-frontend" and fields["public_ip"].startswith("127.0.0.6:")


def test_an_extension_moves_the_hold_nodes_end() -> None:
    obs = observed("extended: the HOLD node still has the old end")
    edits = [a for a in decide(obs) if isinstance(a, EditEnd)]
    hold = next(a for a in obs.ads if a.get("DAGNodeName") == "HOLD_a")
    assert edits == [EditEnd(obs.res.id, f"{hold['ClusterId']}.{hold['ProcId']}", obs.res.end)]
    assert hold["PccEnd"] < obs.res.end


def test_a_hold_node_released_at_the_end_and_tearing_down_means_stopping() -> None:
    obs = observed("HOLD released at the end, tearing down")
    assert states_after(obs, decide(obs)) == {"a": State.STOPPING}


def test_a_running_final_node_after_a_failed_boot_means_stopping_and_the_failure_stays() -> None:
    obs = observed("FINAL running after a failed boot")
    assert states_after(obs, decide(obs)) == {"a": State.STOPPING, "c": State.FAILED}


def test_a_dag_gone_whose_hold_node_tore_its_site_down_and_final_skipped_means_stopped() -> None:
    obs = observed("DAG gone with per-site teardown results")
    assert not any(a.get("DAGNodeName") == "FINAL" for a in obs.history)  # skipped by its PRE script
    assert states_after(obs, decide(obs)) == {"a": State.STOPPED}


def test_a_dag_gone_whose_hold_node_could_not_tear_down_fails_the_allocation_with_its_message() -> None:
    obs = observed("DAG gone with per-site teardown results")
    history = tuple(
        {**a, "PccState": "teardown-failed", "PccTornDown": "", "PccMessage": "a: cannot reach host"}
        if a.get("DAGNodeName") == "HOLD_a"
        else a
        for a in obs.history
    )
    actions = decide(dataclasses.replace(obs, history=history))
    assert states_after(obs, actions) == {"a": State.FAILED}
    assert next(a for a in actions if isinstance(a, Fail)).reason == "teardown failed: a: cannot reach host"


def test_a_partly_failed_dag_stops_the_site_that_ran_and_keeps_the_failure() -> None:
    obs = observed("partly failed DAG gone")
    assert states_after(obs, decide(obs)) == {"a": State.STOPPED, "c": State.FAILED}


def test_a_held_boot_job_is_removed_before_its_allocation_is_failed() -> None:
    obs = observed("boot held")
    actions = decide(obs)
    kinds = [type(a) for a in actions]
    assert RemoveJob in kinds and Fail in kinds and kinds.index(RemoveJob) < kinds.index(Fail)
    fail = next(a for a in actions if isinstance(a, Fail))
    assert fail.reason.startswith("boot job held:")


def test_a_boot_waiting_on_hold_for_its_time_is_waiting_not_failed() -> None:
    """A scheduler-universe boot is queued on hold (HoldReasonCode 15) until the schedd
    releases it at its time: the same ad with that code is neither removed nor failed."""
    obs = observed("boot held")
    ads = tuple(
        {**a, "HoldReasonCode": 15, "HoldReason": "submitted on hold"}
        if str(a.get("DAGNodeName", "")).startswith("BOOT_")
        else a
        for a in obs.ads
    )
    actions = decide(dataclasses.replace(obs, ads=ads))
    assert not [a for a in actions if isinstance(a, RemoveJob | Fail)]
    assert states_after(obs, actions) == {a.site: a.state for a in obs.res.allocations}


def test_a_held_retry_of_a_boot_already_failed_is_removed_too() -> None:
    """DAGMan retries a removed boot node; a retry held again must not stall the DAG."""
    obs = observed("boot held")
    failed = tuple(dataclasses.replace(a, state=State.FAILED) for a in obs.res.allocations)
    actions = decide(Observation(dataclasses.replace(obs.res, allocations=failed), obs.ads))
    assert [type(a) for a in actions] == [RemoveJob]


def test_a_cancelled_reservation_has_its_dag_removed() -> None:
    obs = observed("cancelled while its DAG is queued")
    dag = obs.res.dag_cluster
    assert dag is not None
    assert RemoveDag(obs.res.id, dag, f"reservation {obs.res.id} cancelled") in decide(obs)


def test_a_lost_cluster_does_not_keep_saying_running() -> None:
    obs = observed("HOLD waiting, cluster running")
    ads = tuple(
        {**a, "PccState": "lost", "PccMessage": "the site reports no nodes for this cluster", "PccNodesUp": 0}
        if a.get("DAGNodeName") == "HOLD_a"
        else a
        for a in obs.ads
    )
    actions = decide(Observation(obs.res, ads))
    assert states_after(obs, actions) == {"a": State.FAILED}
    assert next(a for a in actions if isinstance(a, Fail)).reason.startswith("lost:")


class RefusingCondor:
    """A condor adapter whose removals fail (the schedd briefly away)."""

    def remove(self, job: object, reason: str) -> int:
        raise CondorError("remove failed: the schedd is away")


def test_when_the_removal_of_a_held_boot_fails_the_allocation_is_not_failed_and_the_next_pass_retries(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "pcc.db")
    now = int(time.time())
    res = store.add_reservation(
        Reservation(
            "", "alice", "", "tiny", now + 60, now + 600, now, allocations=(Allocation("", "a", 1, 1.0),)
        )
    )
    alloc = res.allocations[0]
    assert alloc.id is not None
    store.transition(alloc.id, State.SCHEDULED, "DAG 7 submitted")
    reconciler = Reconciler.__new__(Reconciler)  # only the executor is used
    reconciler.store, reconciler.condor = store, RefusingCondor()  # type: ignore[assignment]
    actions = [RemoveJob(res.id, "8.0", "boot could not start in time"), Fail(res.id, alloc.id, "a", "held")]
    with pytest.raises(CondorError):
        reconciler.execute(actions, Outcome())
    assert store.reservation(res.id).allocations[0].state is State.SCHEDULED


def test_a_site_its_monitor_cannot_reach_never_ends_or_fails_a_running_allocation() -> None:
    obs = observed("HOLD waiting, cluster running")
    running = tuple(dataclasses.replace(a, state=State.RUNNING) for a in obs.res.allocations)
    ads = tuple(
        {**a, "PccState": "unreachable", "PccMessage": "site unreachable: connection refused"}
        if a.get("DAGNodeName") == "HOLD_a"
        else a
        for a in obs.ads
    )
    actions = decide(Observation(dataclasses.replace(obs.res, allocations=running), ads))
    assert not any(isinstance(a, Transition | Fail | RemoveDag | RemoveJob) for a in actions)


def test_an_extension_during_the_boot_rewrites_the_end_file_the_hold_node_will_read() -> None:
    obs = observed("boot running")
    assert not any(isinstance(a, WriteEnd) for a in decide(obs))  # not read: nothing to say
    stale = dataclasses.replace(obs, end_file=obs.res.end - 600)
    actions = decide(stale)
    assert actions[0] == WriteEnd(obs.res.id, obs.res.end)
    assert not any(isinstance(a, WriteEnd) for a in decide(dataclasses.replace(obs, end_file=obs.res.end)))


@pytest.mark.parametrize("label", sorted(RECORDED))
def test_node_jobs_in_the_scheduler_universe_are_not_taken_for_the_dag(label: str) -> None:
    """Boot, HOLD and FINAL jobs run in the scheduler universe, as DAGMan does (the stages
    were recorded with local-universe nodes): only the job without a DAGNodeName is the DAG,
    so every decision stays the same."""
    obs = observed(label)

    def scheduler(ads: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        return tuple({**a, "JobUniverse": 7} if a.get("DAGNodeName") else a for a in ads)

    moved = dataclasses.replace(obs, ads=scheduler(obs.ads), history=scheduler(obs.history))
    assert [a.get("ClusterId") for a in moved.dag_ads] == [a.get("ClusterId") for a in obs.dag_ads]
    assert decide(moved) == decide(obs)
