"""The command-line entry points: exit codes and one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pcc import __version__
from pcc.cli import main as cli
from pcc.jobs import main as job


def test_condor_status_without_an_install_exits_3_with_a_one_line_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["--state-dir", str(tmp_path), "condor", "status"], out=io.StringIO())
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3
    assert err[-1].startswith("pcc: error: HTCondor is not installed in") and "make install" in err[-1]


def test_pcc_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pcc {__version__}"


def test_pcc_job_outside_a_job_explains_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("_CONDOR_JOB_AD", raising=False)
    assert job.main(["publish", "PccState=running"]) == 1
    assert "not running as an HTCondor job" in capsys.readouterr().err


def test_bad_state_settings_are_one_line_config_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PCC_CONDOR_CONFIG", str(tmp_path / "missing"))
    assert cli.main(["--state-dir", str(tmp_path), "condor", "status"], out=io.StringIO()) == 2
    assert "PCC_CONDOR_CONFIG / [condor] config: no such file" in capsys.readouterr().err


def test_a_checkouts_pcc_finds_the_state_beside_its_virtualenv(tmp_path: Path) -> None:
    from pcc.controller.settings import default_state_dir

    (tmp_path / ".venv").mkdir()
    (tmp_path / ".state").mkdir()
    state, why = default_state_dir(env={}, prefix=str(tmp_path / ".venv"))
    assert state == (tmp_path / ".state").resolve() and "beside the virtualenv" in why
    assert default_state_dir(env={"PCC_STATE_DIR": str(tmp_path / "x")}, prefix=str(tmp_path / ".venv")) == (
        (tmp_path / "x").resolve(),
        "from $PCC_STATE_DIR",
    )
    (tmp_path / ".state").rmdir()
    assert default_state_dir(env={}, prefix=str(tmp_path / ".venv"))[0] != tmp_path / ".state"


def test_a_command_that_finds_no_store_says_where_it_looked_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["list"], ["show", "r00001"], ["sites"], ["images"]):
        assert cli.main(["--state-dir", str(tmp_path), *command], out=io.StringIO()) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"pcc: error: no store at {tmp_path}/pcc.db: state directory {tmp_path} (from --state-dir); "
            "run `pcc serve` (or `make run`) with this state directory first, or point at another "
            "with --state-dir or $PCC_STATE_DIR"
        )
    assert not (tmp_path / "pcc.db").exists()  # looking created nothing
