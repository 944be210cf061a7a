"""Which pool settings make reservations late or stall, judged from the values alone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pcc.condor.knobs import CAPACITY, KNOBS, Finding, findings
from pcc.condor.pool import PersonalPool

GOOD = {
    "PERIODIC_EXPR_INTERVAL": "5",
    "SCHEDULER_UNIVERSE_COOL_DOWN_DURATION": "0",
    "JOB_STOP_COUNT": "100",
    "MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER": str(CAPACITY),
    "START_SCHEDULER_UNIVERSE": f"TotalSchedulerJobsRunning < {CAPACITY}",
    "START_LOCAL_UNIVERSE": f"TotalLocalJobsRunning < {CAPACITY}",
    "NEGOTIATOR_INTERVAL": "10",
}


def names(found: list[Finding]) -> list[str]:
    return [f.name for f in found]


def only(values: dict[str, str | None]) -> Finding:
    (finding,) = findings({**GOOD, **values})
    return finding


def test_a_pool_left_at_htcondors_defaults_is_wrong_in_everything_but_max_jobs_running() -> None:
    found = findings({})
    assert names(found) == [k.name for k in KNOBS if k.name != "MAX_JOBS_RUNNING"]
    assert all(f.current is None for f in found)


def test_values_that_are_good_enough_have_no_finding() -> None:
    assert findings(GOOD) == []


def test_an_unset_setting_is_shown_with_its_default_and_the_value_to_set() -> None:
    values: dict[str, str | None] = {**GOOD, "PERIODIC_EXPR_INTERVAL": None}
    (finding,) = findings(values)
    assert finding.text().startswith(
        "PERIODIC_EXPR_INTERVAL = 60 (default) — set PERIODIC_EXPR_INTERVAL = 5: the schedd evaluates"
    )


def test_a_set_value_is_shown_as_the_pool_has_it() -> None:
    finding = only({"PERIODIC_EXPR_INTERVAL": "30"})
    assert finding.current == "30"
    assert finding.text().startswith("PERIODIC_EXPR_INTERVAL = 30 — set PERIODIC_EXPR_INTERVAL = 5:")
    assert (
        only({"PERIODIC_EXPR_INTERVAL": "60"}).text().startswith("PERIODIC_EXPR_INTERVAL = 60 (default) — ")
    )


def test_names_are_matched_in_any_case_and_an_empty_value_means_unset() -> None:
    assert findings({k.lower(): v for k, v in GOOD.items()}) == []
    assert only({"SCHEDULER_UNIVERSE_COOL_DOWN_DURATION": ""}).current is None


def test_numeric_settings_may_be_expressions_as_htcondor_evaluates_them() -> None:
    assert (
        findings({**GOOD, "MAX_JOBS_RUNNING": "MIN({24105, 10000})", "PERIODIC_EXPR_INTERVAL": "2+3"}) == []
    )
    assert only({"MAX_JOBS_RUNNING": "MIN({50, 10000})"}).value == "10000"


@pytest.mark.parametrize(
    ("cap", "ok"),
    [("200", False), ("0", False), (str(CAPACITY - 1), False), (str(CAPACITY), True), ("-1", True)],
)
def test_running_dagmans_per_owner_must_allow_every_reservation_or_be_unlimited(cap: str, ok: bool) -> None:
    found = findings({**GOOD, "MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER": cap})
    assert found == [] if ok else names(found) == ["MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER"]


def test_a_dagman_cap_at_or_above_the_queue_cap_per_owner_is_not_applied_by_the_schedd() -> None:
    assert (
        findings({**GOOD, "MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER": "500", "MAX_JOBS_PER_OWNER": "500"}) == []
    )


def test_the_stop_count_needed_grows_with_the_stop_delay() -> None:
    assert only({"JOB_STOP_COUNT": "100", "JOB_STOP_DELAY": "3"}).value == "300"
    assert findings({**GOOD, "JOB_STOP_COUNT": "300", "JOB_STOP_DELAY": "3"}) == []
    assert (
        only({"JOB_STOP_COUNT": None})
        .text()
        .startswith("JOB_STOP_COUNT = 1 (default) — set JOB_STOP_COUNT = 100")
    )


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("TotalLocalJobsRunning < 200", False),
        (f"TotalLocalJobsRunning < {CAPACITY}", True),
        ("TotalLocalJobsRunning < 5000 && TotalSchedulerJobsRunning < 10", True),
        ("false", False),
        ("true", True),
    ],
)
def test_start_local_universe_must_let_capacity_jobs_run(expr: str, ok: bool) -> None:
    found = findings({**GOOD, "START_LOCAL_UNIVERSE": expr})
    assert found == [] if ok else names(found) == ["START_LOCAL_UNIVERSE"]


def test_a_start_expression_pcc_cannot_evaluate_is_named_with_the_reason() -> None:
    finding = only({"START_SCHEDULER_UNIVERSE": "TARGET.Owner == MY.Favourite"})
    assert finding.value == f"TotalSchedulerJobsRunning < {CAPACITY}"
    assert "PCC cannot judge 'TARGET.Owner == MY.Favourite'" in finding.why


def test_a_value_that_is_no_number_is_named_rather_than_crashing_the_check() -> None:
    finding = only({"PERIODIC_EXPR_INTERVAL": "$(UNEXPANDED)"})
    assert "PCC cannot judge '$(UNEXPANDED)' (not a number" in finding.why


def test_a_slow_negotiator_makes_boots_late() -> None:
    assert only({"NEGOTIATOR_INTERVAL": "60"}).value == "10"
    assert findings({**GOOD, "NEGOTIATOR_INTERVAL": "15"}) == []


def test_every_knob_says_what_to_set_and_why_on_one_line() -> None:
    for finding in findings({}):
        assert "\n" not in finding.text() and finding.why and finding.value


def test_the_embedded_pool_passes_every_check(tmp_path: Path) -> None:
    text = PersonalPool(prefix=tmp_path / "prefix", local_dir=tmp_path / "local").render_config()
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("use "):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    assert findings(values) == []


# -- `pcc condor check`, with the pool's answer given -----------------------------------------
def check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str | None], *opts: str
) -> tuple[int, str]:
    from pcc.cli import main as cli
    from pcc.condor import adapter, knobs

    config = tmp_path / "condor_config"
    config.write_text("# an existing pool\n")
    monkeypatch.setenv("PCC_CONDOR_CONFIG", str(config))
    monkeypatch.setattr(adapter, "use_pool", lambda *_args: None)
    answer = knobs.PoolValues(values, {"schedd": "the schedd at <127.0.0.1:9618>"})
    monkeypatch.setattr(knobs, "read_values", lambda: answer)
    out = io.StringIO()
    rc = cli.main(["--state-dir", str(tmp_path), "condor", "check", *opts], out=out)
    return rc, out.getvalue()


def test_check_of_a_good_pool_says_so_and_exits_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rc, out = check(monkeypatch, tmp_path, dict(GOOD))
    assert rc == 0
    assert out.splitlines() == [
        "schedd settings read from the schedd at <127.0.0.1:9618>",
        f"the pool at CONDOR_CONFIG={tmp_path / 'condor_config'} is set up for PCC",
    ]


def test_check_names_each_bad_setting_with_the_value_to_set_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rc, out = check(monkeypatch, tmp_path, {**GOOD, "PERIODIC_EXPR_INTERVAL": "60", "JOB_STOP_COUNT": None})
    lines = out.splitlines()
    assert rc == 3
    assert lines[1].startswith("PERIODIC_EXPR_INTERVAL = 60 (default) — set PERIODIC_EXPR_INTERVAL = 5: ")
    assert lines[2].startswith("JOB_STOP_COUNT = 1 (default) — set JOB_STOP_COUNT = 100: ")
    assert "would make reservations late or stall: 2 settings to change" in lines[3]


def test_check_in_json_gives_the_findings_and_where_the_values_came_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # (NEGOTIATOR_INTERVAL matters only to vanilla boots: not to this default controller.)
    values = {**GOOD, "NEGOTIATOR_INTERVAL": "60", "SCHEDULER_UNIVERSE_COOL_DOWN_DURATION": "300"}
    rc, out = check(monkeypatch, tmp_path, values, "-o", "json")
    doc = json.loads(out)
    assert rc == 3 and doc["ok"] is False
    assert doc["read_from"] == {"schedd": "the schedd at <127.0.0.1:9618>"}
    assert [(f["name"], f["current"], f["value"]) for f in doc["findings"]] == [
        ("SCHEDULER_UNIVERSE_COOL_DOWN_DURATION", "300", "0")
    ]


def test_check_of_an_embedded_pool_never_started_says_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pcc.cli import main as cli

    monkeypatch.delenv("PCC_CONDOR_CONFIG", raising=False)
    assert cli.main(["--state-dir", str(tmp_path), "condor", "check"], out=io.StringIO()) == 3
    assert "start it with `pcc condor start`" in capsys.readouterr().err


def test_serve_is_warned_once_per_bad_setting_and_a_failed_read_does_not_stop_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pcc.condor import knobs

    answer = knobs.PoolValues({**GOOD, "PERIODIC_EXPR_INTERVAL": "60", "NEGOTIATOR_INTERVAL": "30"})
    monkeypatch.setattr(knobs, "read_values", lambda: answer)
    with caplog.at_level("WARNING", logger="pcc.condor.knobs"):
        assert names(knobs.warn_about_pool("at CONDOR_CONFIG=/etc/condor/condor_config")) == [
            "PERIODIC_EXPR_INTERVAL",
            "NEGOTIATOR_INTERVAL",
        ]
    assert [r.getMessage().split(" — ")[0] for r in caplog.records] == [
        "pool at CONDOR_CONFIG=/etc/condor/condor_config: PERIODIC_EXPR_INTERVAL = 60 (default)",
        "pool at CONDOR_CONFIG=/etc/condor/condor_config: NEGOTIATOR_INTERVAL = 30",
    ]

    def down() -> knobs.PoolValues:
        raise RuntimeError("no schedd")

    caplog.clear()
    monkeypatch.setattr(knobs, "read_values", down)
    assert knobs.warn_about_pool("x") == []
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_only_the_settings_of_the_boot_universe_in_use_are_checked() -> None:
    from pcc.condor.knobs import knobs_for

    defaults_found = {u: names(findings({}, knobs_for(u))) for u in ("scheduler", "local", "vanilla")}
    # Scheduler-universe boots need no starter, no shadow and no negotiator.
    assert "START_LOCAL_UNIVERSE" not in defaults_found["scheduler"]
    assert "NEGOTIATOR_INTERVAL" not in defaults_found["scheduler"]
    assert "START_LOCAL_UNIVERSE" in defaults_found["local"]
    assert "NEGOTIATOR_INTERVAL" in defaults_found["vanilla"]
    for found in defaults_found.values():  # what every controller needs
        assert {"PERIODIC_EXPR_INTERVAL", "START_SCHEDULER_UNIVERSE"} <= set(found)
