"""The HTCondor adapter, and the DAGs PCC renders, against a real personal pool started by the
session fixture."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import htcondor2
import pytest
from htcondor2 import dags

from pcc.common.errors import CondorError
from pcc.common.jobstate import PccState
from pcc.condor.adapter import CondorAdapter, JobStatus, Universe
from pcc.condor.dag import JobEnvironment, render_dag, submit_reservation
from pcc.condor.pool import PersonalPool
from pcc.controller.model import Allocation, Reservation
from pcc.controller.settings import Settings, SiteEntry, Timings
from pcc.jobs.main import ExitStatus

pytestmark = pytest.mark.condor

VENV_BIN = Path(sys.executable).parent


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def done(ad: dict) -> bool:
    return ad.get("JobStatus") == JobStatus.COMPLETED


def wait_finished(condor: CondorAdapter, cluster: int, timeout: float = 60) -> dict:
    return condor.wait_for(
        f"ClusterId == {cluster}",
        done,
        ["JobStatus", "ExitCode", "JobStartDate", "JobCurrentStartExecutingDate", "DeferralTime"],
        timeout=timeout,
        include_history=True,
    )


def base(job_dir: Path, executable: Path, **extra: str) -> dict[str, str]:
    return {
        "executable": str(executable),
        "output": str(job_dir / "out.txt"),
        "error": str(job_dir / "err.$(Cluster).txt"),
        "log": str(job_dir / "job.log"),
        "should_transfer_files": "NO",
        **extra,
    }


def test_a_job_runs_to_completion(condor: CondorAdapter, job_dir: Path) -> None:
    exe = script(job_dir / "hello.sh", "echo hello from $(id -un)\n")
    sub = condor.submit(base(job_dir, exe))
    ad = wait_finished(condor, sub.cluster)
    assert ad["ExitCode"] == 0
    assert (job_dir / "out.txt").read_text().startswith("hello from")


def test_custom_attribute_is_visible_to_bindings_and_condor_q(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    exe = script(job_dir / "sleep.sh", "sleep 60\n")
    sub = condor.submit(base(job_dir, exe, **{"My.PccReservation": '"r-42"', "hold": "true"}))
    try:
        ads = condor.query(f"ClusterId == {sub.cluster}", ["PccReservation"])
        assert ads == [{"PccReservation": "r-42"}]
        out = subprocess.run(
            ["condor_q", "-af", "PccReservation", "-constraint", f"ClusterId == {sub.cluster}"],
            env=condor_pool.client_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "r-42"
    finally:
        condor.remove(sub.cluster, "test done")


def test_running_job_sets_its_own_attribute_with_chirp(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    chirp = condor_pool.libexec_dir / "condor_chirp"
    exe = script(job_dir / "chirp.sh", f"{chirp} set_job_attr PccState '\"running\"'\nsleep 60\n")
    sub = condor.submit(base(job_dir, exe, **{"My.WantIOProxy": "true"}))
    try:
        ad = condor.wait_for(
            f"ClusterId == {sub.cluster}",
            lambda a: a.get("PccState") == "running",
            ["PccState", "JobStatus"],
            timeout=60,
        )
        assert ad["JobStatus"] == JobStatus.RUNNING
    finally:
        condor.remove(sub.cluster, "test done")


def test_pcc_job_publish_uses_chirp_in_vanilla_and_the_schedd_in_local_and_scheduler_universe(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    publish = VENV_BIN / "pcc-job"
    exe = script(job_dir / "pub.sh", f'{publish} publish "PccMessage=$1" PccNodesUp=2\nsleep 60\n')
    vanilla = condor.submit(base(job_dir, exe, arguments="vanilla", **{"My.WantIOProxy": "true"}))
    on_host = [
        condor.submit(
            base(
                job_dir,
                exe,
                arguments=universe,
                universe=universe,
                environment=f'"CONDOR_CONFIG={condor_pool.config_file}"',
            )
        )
        for universe in ("local", "scheduler")
    ]
    clusters = [vanilla.cluster, *(sub.cluster for sub in on_host)]
    try:
        for cluster, message in zip(clusters, ("vanilla", "local", "scheduler"), strict=True):
            ad = condor.wait_for(
                f"ClusterId == {cluster}",
                lambda a: a.get("PccNodesUp") == 2,
                ["PccMessage", "PccNodesUp"],
                timeout=60,
            )
            assert ad["PccMessage"] == message
        err = "".join(p.read_text() for p in job_dir.glob("err.*.txt"))
        assert "via chirp" in err and err.count("via schedd") == 2
    finally:
        condor.remove(" || ".join(f"ClusterId == {c}" for c in clusters), "test done")


def test_an_edit_forwarded_to_a_running_job_is_read_by_it(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    chirp = condor_pool.libexec_dir / "condor_chirp"
    exe = script(
        job_dir / "follow.sh",
        (
            f"{chirp} set_job_attr PccState '\"watching\"'\n"
            "i=0\n"
            "while [ $i -lt 300 ]; do\n"
            f"  v=$({chirp} get_job_attr PccEnd)\n"
            '  if [ "$v" != "100" ]; then echo "saw $v"; exit 0; fi\n'
            "  sleep 0.2; i=$((i+1))\n"
            "done\nexit 1\n"
        ),
    )
    sub = condor.submit(base(job_dir, exe, **{"My.WantIOProxy": "true", "My.PccEnd": "100"}))
    condor.wait_for(
        f"ClusterId == {sub.cluster}", lambda a: a.get("PccState") == "watching", ["PccState"], timeout=60
    )
    assert condor.edit(sub.cluster, "PccEnd", 200, forward=True) == 1
    ad = wait_finished(condor, sub.cluster)
    assert ad["ExitCode"] == 0
    assert (job_dir / "out.txt").read_text().strip() == "saw 200"


def test_deferral_time_holds_a_job_until_its_time(condor: CondorAdapter, job_dir: Path) -> None:
    exe = script(job_dir / "when.sh", "date +%s\n")
    start = int(time.time()) + 8
    sub = condor.submit(
        base(
            job_dir,
            exe,
            deferral_time=str(start),
            deferral_prep_time="2",
            deferral_window="60",
            **{"My.ScheddInterval": "0"},
        )
    )
    time.sleep(3)
    assert not (job_dir / "out.txt").exists() or not (job_dir / "out.txt").read_text().strip()
    ad = wait_finished(condor, sub.cluster, timeout=60)
    ran_at = int((job_dir / "out.txt").read_text().strip())
    assert ad["ExitCode"] == 0
    assert ran_at >= start


def test_a_deferral_time_already_past_still_runs_within_the_window(
    condor: CondorAdapter, job_dir: Path
) -> None:
    exe = script(job_dir / "late.sh", "date +%s\n")
    sub = condor.submit(
        base(
            job_dir,
            exe,
            deferral_time=str(int(time.time()) - 30),
            deferral_window="3600",
            **{"My.ScheddInterval": "0"},
        )
    )
    assert wait_finished(condor, sub.cluster, timeout=60)["ExitCode"] == 0


def dag_with_final(job_dir: Path, node_body: str) -> Path:
    node = script(job_dir / "node.sh", node_body)
    final = script(job_dir / "final.sh", f'echo "$1" > {job_dir}/final_status\n')
    for name, exe, args in (("node", node, ""), ("final", final, "$(DAG_STATUS)")):
        (job_dir / f"{name}.sub").write_text(
            f"executable = {exe}\narguments = {args}\nshould_transfer_files = NO\n"
            f"output = {job_dir}/{name}.out\nerror = {job_dir}/{name}.err\nqueue\n"
        )
    dag = job_dir / "test.dag"
    # DAGMan defines $(DAG_STATUS) for the FINAL node's submit description.
    dag.write_text(f"JOB A {job_dir}/node.sub\nFINAL F {job_dir}/final.sub\n")
    return dag


def wait_file(path: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.3)
    raise AssertionError(f"{path} was not written within {timeout} s")


def test_dag_final_node_runs_when_a_node_fails(condor: CondorAdapter, job_dir: Path) -> None:
    dag = dag_with_final(job_dir, "exit 3\n")
    sub = condor.submit_dag(dag)
    assert wait_file(job_dir / "final_status") == "2"
    wait_finished(condor, sub.cluster, timeout=60)


def test_dag_final_node_runs_when_the_dag_is_removed(condor: CondorAdapter, job_dir: Path) -> None:
    dag = dag_with_final(job_dir, "sleep 300\n")
    sub = condor.submit_dag(dag)
    condor.wait_for(
        f'DAGManJobId == {sub.cluster} && DAGNodeName == "A"',
        lambda a: a.get("JobStatus") == JobStatus.RUNNING,
        ["JobStatus"],
        timeout=60,
    )
    assert condor.remove(sub.cluster, "reservation cancelled") == 1
    assert wait_file(job_dir / "final_status") == "4"


def test_a_dagman_job_carries_its_attributes_from_the_submit_on(condor: CondorAdapter, job_dir: Path) -> None:
    dag = dag_with_final(job_dir, "sleep 300\n")
    sub = condor.submit_dag(
        dag, {"batch-name": "r-attrs"}, attributes={"PccReservation": "r-attrs", "PccOwner": "alice"}
    )
    try:
        ads = condor.query(
            f"ClusterId == {sub.cluster}", ["JobBatchName", "PccReservation", "PccOwner", "JobUniverse"]
        )
        assert ads == [
            {
                "JobBatchName": "r-attrs",
                "PccReservation": "r-attrs",
                "PccOwner": "alice",
                "JobUniverse": Universe.SCHEDULER,
            }
        ]
    finally:
        condor.remove(sub.cluster, "test done")


def test_dagman_retries_a_rendered_node_unless_it_exits_permanent(
    condor: CondorAdapter, job_dir: Path
) -> None:
    dag = dags.DAG()
    for name, code in (("PERMANENT", int(ExitStatus.PERMANENT)), ("TEMPORARY", int(ExitStatus.ERROR))):
        exe = script(job_dir / f"{name}.sh", f"echo run >> {job_dir}/{name}.runs\nexit {code}\n")
        (job_dir / f"{name}.sub").write_text(
            f"universe = local\nexecutable = {exe}\nshould_transfer_files = NO\nqueue\n"
        )
        dag.layer(
            name=name,
            submit_description=job_dir / f"{name}.sub",
            retries=2,
            retry_unless_exit=int(ExitStatus.PERMANENT),
        )
    final = script(job_dir / "final.sh", f'echo "$1" > {job_dir}/final_status\n')
    (job_dir / "final.sub").write_text(
        f"universe = local\nexecutable = {final}\narguments = $(DAG_STATUS)\nqueue\n"
    )
    dag.final(name="FINAL", submit_description=job_dir / "final.sub")
    dag_file = job_dir / "retry.dag"
    dag_file.write_text(render_dag(dag))
    condor.submit_dag(dag_file)
    assert wait_file(job_dir / "final_status") == "2"  # FINAL ran, from the path it was given
    assert (job_dir / "PERMANENT.runs").read_text().count("run") == 1
    assert (job_dir / "TEMPORARY.runs").read_text().count("run") == 3


def test_a_reservation_dag_boots_waits_with_no_process_until_its_end_then_tears_down(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    calls = job_dir / "calls"
    fake_job = script(job_dir / "pcc-job", f'echo "$1" >> {calls}\n')
    site = SiteEntry("a", "127.0.0.2", 22, "pragma", job_dir / "id", job_dir / "known_hosts", 4, 8)
    settings = Settings(
        state_dir=job_dir / "state", sites=(site,), timings=Timings(boot_lead_s=0, boot_retries=1)
    )
    now = int(time.time())
    res = Reservation(
        "r-dag",
        "alice",
        "t",
        "img",
        now,
        now + 15,
        now - 1,
        "ssh-ed25519 AAAA alice",
        allocations=(Allocation("r-dag", "a", 2, 4.0),),
    )
    env = JobEnvironment(fake_job, condor_pool.config_file, job_dir / "pcc.toml", job_dir / "state")
    owner = condor_pool.service_user if os.geteuid() == 0 else None
    cluster = submit_reservation(condor, res, settings, env, owner)
    first = condor.query(f"ClusterId == {cluster}", ["JobBatchName", "PccReservation", "PccOwner"])
    assert first == [{"JobBatchName": "r-dag", "PccReservation": "r-dag", "PccOwner": "alice"}]
    wait_finished(condor, cluster, timeout=120)
    # The boot, then the HOLD node's teardown once the schedd released it; every node succeeded,
    # so FINAL's PRE script skipped it: no second teardown, no FINAL job at all.
    assert calls.read_text().split() == ["boot", "teardown"]
    nodes = condor.history(
        f"DAGManJobId == {cluster}",
        ["DAGNodeName", "JobUniverse", "PccState", "Cmd", "JobCurrentStartDate"],
    )
    assert sorted((n["DAGNodeName"], n["JobUniverse"], n["PccState"]) for n in nodes) == [
        # The boot through a starter (the default); the teardown run by the schedd itself.
        ("BOOT_a", Universe.LOCAL, PccState.SCHEDULED),
        ("HOLD_a", Universe.SCHEDULER, PccState.BOOTED),
    ]
    (hold,) = [n for n in nodes if n["DAGNodeName"] == "HOLD_a"]
    assert hold["Cmd"] == str(fake_job)
    # Released by the schedd at the end (PERIODIC_EXPR_INTERVAL = 1), not before.
    assert res.end <= hold["JobCurrentStartDate"] <= res.end + 10, (hold["JobCurrentStartDate"], res.end)


def _boot_only_dag(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path, name: str, begin: int, end: int
) -> tuple[int, Path]:
    calls = job_dir / f"calls-{name}"
    fake_job = script(job_dir / f"pcc-job-{name}", f"date +%s >> {calls}\n")
    site = SiteEntry("a", "127.0.0.2", 22, "pragma", job_dir / "id", job_dir / "known_hosts", 4, 8)
    settings = Settings(
        state_dir=job_dir / "state",
        sites=(site,),
        timings=Timings(boot_lead_s=0, boot_retries=0),
        boot_universe="scheduler",
    )
    res = Reservation(
        name,
        "alice",
        "t",
        "img",
        begin,
        end,
        begin - 1,
        "ssh-ed25519 AAAA alice",
        allocations=(Allocation(name, "a", 2, 4.0),),
    )
    env = JobEnvironment(fake_job, condor_pool.config_file, job_dir / "pcc.toml", job_dir / "state")
    owner = condor_pool.service_user if os.geteuid() == 0 else None
    return submit_reservation(condor, res, settings, env, owner), calls


def test_a_scheduler_universe_boot_waits_on_hold_with_no_process_until_its_time(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    begin = int(time.time()) + 12
    cluster, calls = _boot_only_dag(condor, condor_pool, job_dir, "r-wait", begin, begin + 8)
    boot = condor.wait_for(
        f'DAGManJobId == {cluster} && DAGNodeName == "BOOT_a"',
        lambda a: a.get("JobStatus") is not None,
        ["JobStatus", "HoldReasonCode", "PccBootAt"],
        timeout=60,
    )
    assert (boot["JobStatus"], boot["HoldReasonCode"], boot["PccBootAt"]) == (JobStatus.HELD, 15, begin)
    assert not calls.exists()  # waiting: nothing ran
    wait_finished(condor, cluster, timeout=120)
    ran = [int(t) for t in calls.read_text().split()]  # the boot, then the teardown at the end
    assert len(ran) == 2
    assert begin <= ran[0] <= begin + 10, (ran, begin)


def test_a_scheduler_universe_boot_whose_window_passed_is_removed_and_never_runs(
    condor: CondorAdapter, condor_pool: PersonalPool, job_dir: Path
) -> None:
    now = int(time.time())
    cluster, calls = _boot_only_dag(condor, condor_pool, job_dir, "r-late", now - 300, now - 100)
    condor.wait_for(
        f"ClusterId == {cluster}",
        lambda a: a.get("JobStatus") in (JobStatus.COMPLETED, JobStatus.REMOVED),
        ["JobStatus"],
        timeout=120,
        include_history=True,
    )
    (boot,) = condor.history(
        f'DAGManJobId == {cluster} && DAGNodeName == "BOOT_a"', ["JobStatus", "RemoveReason"], limit=1
    )
    assert boot["JobStatus"] == JobStatus.REMOVED
    assert "PeriodicRemove" in boot["RemoveReason"]
    # FINAL ran (the DAG failed): its teardown is the only call.
    assert len(calls.read_text().split()) == 1


def test_schedd_refusals_become_condor_errors_with_its_message(condor: CondorAdapter) -> None:
    with pytest.raises(CondorError, match="universe"):
        condor.submit({"executable": "/bin/true", "universe": "no-such-universe"})
    with pytest.raises(CondorError, match="edit of PccState"):
        condor.edit("ClusterId == 999999", "PccState", "x")


def test_history_returns_finished_jobs_with_a_projection(condor: CondorAdapter, job_dir: Path) -> None:
    exe = script(job_dir / "exit7.sh", "exit 7\n")
    sub = condor.submit(base(job_dir, exe, **{"My.PccReservation": '"r-hist"'}))
    wait_finished(condor, sub.cluster)
    rows = condor.history(f"ClusterId == {sub.cluster}", ["ExitCode", "PccReservation"], limit=1)
    assert rows == [{"ExitCode": 7, "PccReservation": "r-hist"}]


def test_daemons_run_unprivileged_and_match_the_bindings_version(condor_pool: PersonalPool) -> None:
    pid = condor_pool.master_pid()
    assert pid is not None
    assert os.stat(f"/proc/{pid}").st_uid != 0
    out = subprocess.run(
        [str(condor_pool.bin_dir / "condor_version")],
        env=condor_pool.client_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert htcondor2.version().split()[1] in out
