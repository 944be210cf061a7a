"""A reservation's DAG: described in memory, rendered to text (no disk, no schedd)."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path

import pytest

from pcc.common.errors import ConfigError
from pcc.common.jobstate import PccState
from pcc.condor.dag import (
    INITIAL_STATES,
    TEMPLATES,
    JobEnvironment,
    dagman_attributes,
    describe_dag,
    read_end,
    render_dag,
    render_files,
    write_end,
)
from pcc.controller.model import Allocation, Reservation
from pcc.controller.settings import Settings, SiteEntry, Timings
from pcc.jobs.main import ExitStatus

DIR = Path("/var/lib/pcc/dags/r00007")
BEGIN = 1_800_000_000


def site(name: str) -> SiteEntry:
    return SiteEntry(name, "127.0.0.2", 22, "pragma", Path("/keys/id"), Path("/keys/known_hosts"), 8, 16)


SETTINGS = Settings(
    state_dir=Path("/var/lib/pcc"),
    sites=(site("ucsd"), site("aist-2")),
    timings=Timings(boot_lead_s=60, boot_retries=3),
)
RES = Reservation(
    "r00007",
    "alice",
    "two sites",
    "centos7",
    BEGIN,
    BEGIN + 3600,
    BEGIN - 86400,
    "ssh-ed25519 AAAAC3Nza alice@lab\n\n",
    allocations=(Allocation("r00007", "ucsd", 4, 8.0), Allocation("r00007", "aist-2", 2, 4.0)),
)
ENV = JobEnvironment(
    Path("/opt/pcc/bin/pcc-job"),
    Path("/etc/condor/condor_config"),
    Path("/etc/pcc.toml"),
    Path("/var/lib/pcc"),
)


def commands(dag_text: str) -> list[str]:
    return [line for line in dag_text.splitlines() if line and not line.startswith("#")]


def test_two_sites_render_boot_and_hold_nodes_per_site_and_one_final_skipped_on_success() -> None:
    text = render_dag(describe_dag(RES, SETTINGS, DIR))
    assert commands(text) == [
        "JOB BOOT_ucsd /var/lib/pcc/dags/r00007/boot.sub",
        'VARS BOOT_ucsd site="ucsd" cpus="4" compute_cpus="3"',
        "RETRY BOOT_ucsd 3 UNLESS-EXIT 42",
        "PARENT BOOT_ucsd CHILD HOLD_ucsd",
        "JOB BOOT_aist-2 /var/lib/pcc/dags/r00007/boot.sub",
        'VARS BOOT_aist-2 site="aist-2" cpus="2" compute_cpus="1"',
        "RETRY BOOT_aist-2 3 UNLESS-EXIT 42",
        "PARENT BOOT_aist-2 CHILD HOLD_aist-2",
        "JOB HOLD_ucsd /var/lib/pcc/dags/r00007/hold.sub",
        'VARS HOLD_ucsd site="ucsd"',
        "JOB HOLD_aist-2 /var/lib/pcc/dags/r00007/hold.sub",
        'VARS HOLD_aist-2 site="aist-2"',
        "FINAL FINAL /var/lib/pcc/dags/r00007/teardown.sub",
        # DAGMan forks this with the DAG's status; `test` exits 1 when it is 0 (every node,
        # so every HOLD node's teardown, succeeded), and PRE_SKIP then skips FINAL.
        "SCRIPT PRE FINAL /usr/bin/test $DAG_STATUS -ne 0",
        "PRE_SKIP FINAL 1",
    ]


def test_boot_nodes_are_not_retried_when_pcc_job_reports_a_permanent_failure() -> None:
    text = render_dag(describe_dag(RES, SETTINGS, DIR))
    unless = {int(m) for m in re.findall(r"^RETRY BOOT_\S+ \d+ UNLESS-EXIT (\d+)$", text, re.M)}
    assert unless == {ExitStatus.PERMANENT}
    assert not re.search(r"^RETRY HOLD_", text, re.M)  # a removed HOLD node must lead to FINAL


def test_the_dag_file_opens_with_a_comment_naming_the_reservation() -> None:
    text = render_files(RES, SETTINGS, ENV, DIR)["reservation.dag"]
    assert text.startswith("# PCC reservation r00007: centos7 from 2027-01-15T08:00:00Z to ")
    assert "(owner alice)" in text.splitlines()[0]


def test_rendering_touches_no_disk(tmp_path: Path) -> None:
    directory = tmp_path / "not-there"
    files = render_files(RES, SETTINGS, ENV, directory)
    assert set(files) == {"reservation.dag", "boot.sub", "hold.sub", "teardown.sub", "end.sub", "key.pub"}
    assert not directory.exists()


def test_a_scheduler_boot_waits_on_hold_for_its_time_without_a_process_and_is_removed_past_the_end() -> None:
    settings = dataclasses.replace(SETTINGS, boot_universe="scheduler")
    boot = render_files(RES, settings, ENV, DIR)["boot.sub"]
    assert "universe = scheduler\n" in boot  # no slot, no starter
    assert "hold = true\n" in boot
    assert f"My.PccBootAt = {BEGIN - 60}\n" in boot
    assert f"My.PccBootBy = {BEGIN - 60 + 3600 + 60}\n" in boot
    assert (
        "periodic_release = (HoldReasonCode =?= 15) && (time() >= PccBootAt) && (time() <= PccBootBy)\n"
        in boot
    )
    assert "periodic_remove = (JobStatus == 5) && (HoldReasonCode =?= 15) && (time() > PccBootBy)\n" in boot
    assert "\ndeferral_time" not in boot  # the scheduler universe has none
    assert "concurrency_limits" not in boot  # how many boots a site takes at once is the site's
    assert "--attempt $(RETRY) --attempts 4" in boot


@pytest.mark.parametrize("universe", ["local", "vanilla"])
def test_a_boot_with_a_starter_waits_for_its_deferral_time_and_is_held_past_the_end(universe: str) -> None:
    settings = dataclasses.replace(SETTINGS, boot_universe=universe)
    assert SETTINGS.boot_universe == "local"  # the default: no slot, paced by its starters
    boot = render_files(RES, settings, ENV, DIR)["boot.sub"]
    assert f"universe = {universe}\n" in boot
    assert f"deferral_time = {BEGIN - 60}\n" in boot
    assert f"deferral_window = {3600 + 60}\n" in boot
    assert "deferral_prep_time = 20\n" in boot
    assert "My.ScheddInterval = 0\n" in boot
    # Only a boot that never started is held: one running past the end is left to finish.
    assert "periodic_hold = (JobStatus == 1) && (time() > DeferralTime + DeferralWindow)\n" in boot
    assert 'periodic_hold_reason = strcat("the reservation ended before' in boot
    assert "\nhold = true" not in boot


def test_every_job_finds_the_pool_and_the_config_and_the_key_is_a_file() -> None:
    files = render_files(RES, SETTINGS, ENV, DIR)
    environment = (
        'environment = "CONDOR_CONFIG=/etc/condor/condor_config PCC_CONFIG=/etc/pcc.toml '
        'PCC_STATE_DIR=/var/lib/pcc PYTHONUNBUFFERED=1"\n'
    )
    for name in ("boot.sub", "hold.sub", "teardown.sub"):
        assert environment in files[name], name
        assert "executable = /opt/pcc/bin/pcc-job\n" in files[name]
        assert 'My.PccReservation = "r00007"\n' in files[name]
    assert files["key.pub"] == "ssh-ed25519 AAAAC3Nza alice@lab\n"
    assert "AAAAC3Nza" not in files["boot.sub"]
    assert '"teardown --reservation r00007 --sites ucsd,aist-2"' in files["teardown.sub"]
    assert '"teardown --reservation r00007 --sites $(site)"' in files["hold.sub"]  # its own site


def test_every_pcc_state_a_template_sets_is_a_member_of_the_enum() -> None:
    files = render_files(RES, SETTINGS, ENV, DIR)
    seen = {}
    for name in INITIAL_STATES:
        raw = resources.files(TEMPLATES).joinpath(name).read_text()
        # The template takes the state from PccState, never a word of its own.
        assert re.findall(r"^My\.PccState = (.*)$", raw, re.M) == ['"@{initial_state}"'], name
        (value,) = re.findall(r'^My\.PccState = "(.*)"$', files[name], re.M)
        seen[name] = PccState(value)
    assert seen == {"boot.sub": "scheduled", "hold.sub": "booted", "teardown.sub": "stopping"}


def test_every_submit_template_has_its_initial_state() -> None:
    shipped = {p.name for p in resources.files(TEMPLATES).iterdir() if p.name.endswith(".sub")}
    assert shipped == {*INITIAL_STATES, "monitor.sub"}  # a monitor's state is its sites' ads


def test_the_dagman_job_carries_the_reservation_and_its_owner() -> None:
    assert dagman_attributes(RES, "/var/lib/pcc") == {
        "PccReservation": "r00007",
        "PccOwner": "alice",
        "PccRole": "dag",
        "PccController": "/var/lib/pcc",
    }


def test_paths_with_spaces_are_refused_before_they_reach_a_submit_file() -> None:
    env = JobEnvironment(Path("/opt/pcc/pcc-job"), Path("/c"), Path("/p"), Path("/my state"))
    with pytest.raises(ConfigError, match="PCC_STATE_DIR=/my state"):
        render_files(RES, SETTINGS, env, DIR)


def test_the_hold_node_waits_on_hold_until_the_schedd_releases_it_at_the_end_then_tears_down() -> None:
    files = render_files(RES, SETTINGS, ENV, DIR)
    hold = files["hold.sub"]
    assert "universe = scheduler\nexecutable = /opt/pcc/bin/pcc-job\n" in hold
    assert "hold = true\n" in hold
    assert "include : /var/lib/pcc/dags/r00007/end.sub\n" in hold
    assert "periodic_release = (HoldReasonCode =?= 15) && (time() >= PccEnd)\n" in hold
    assert "periodic_remove = (JobStatus == 5) && (HoldReasonCode =!= 15)\n" in hold
    assert 'My.PccRole = "hold"\n' in hold and "My.PccEnd" not in hold  # only in end.sub
    assert files["end.sub"] == f"My.PccEnd = {RES.end}\n"


def test_the_end_file_is_replaced_whole_and_read_back(tmp_path: Path) -> None:
    assert read_end(tmp_path) is None
    write_end(tmp_path, 1_900_000_000)
    assert read_end(tmp_path) == 1_900_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["end.sub"]
    (tmp_path / "end.sub").write_text("My.PccEnd = soon\n")
    assert read_end(tmp_path) is None
