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
