"""`pcc-job boot`: how a failure becomes an exit status DAGMan acts on, and what it publishes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from pcc.common import errors
from pcc.common.jobstate import PccState
from pcc.common.protocol import ErrorDoc, ProtocolError
from pcc.controller.settings import Settings, SiteEntry, Timings
from pcc.jobs import main as job
from pcc.jobs.main import ExitStatus, boot_exit_status


@pytest.mark.parametrize(
    "exc",
    [
        errors.UserInputError("site a: no image 'nope' in the repository"),
        errors.NotFound("site a: no such image"),
        errors.UnsupportedError("site a: ENT is not supported"),
        errors.CapacityError("site a: not enough CPUs: 8 asked, 2 free"),
        errors.ConfigError("site a: /etc/pragma.toml: [driver] type: unknown"),
        errors.PermanentError("site a: unknown host key"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_boot_the_site_refused_for_good_exits_permanent(exc: Exception) -> None:
    assert boot_exit_status(exc) is ExitStatus.PERMANENT


@pytest.mark.parametrize(
    "exc",
    [
        errors.TemporaryError("site a: cannot reach 127.0.0.2:22"),
        ProtocolError("site a: the site tool printed no JSON"),
        errors.DriverError("site a: libvirt: connection reset"),
        errors.PccError("site a: something unexpected"),
        errors.CondorError("schedd away"),
        OSError("disk full"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_boot_that_may_succeed_later_exits_error_and_is_retried(exc: Exception) -> None:
    assert boot_exit_status(exc) is ExitStatus.ERROR


@pytest.mark.parametrize(
    ("named", "status"),
    [
        ("UserInputError", ExitStatus.PERMANENT),
        ("CapacityError", ExitStatus.PERMANENT),
        ("ConfigError", ExitStatus.PERMANENT),
        ("RepositoryError", ExitStatus.PERMANENT),
        ("UnsupportedError", ExitStatus.PERMANENT),
        ("PermanentError", ExitStatus.PERMANENT),
        ("TemporaryError", ExitStatus.ERROR),
        ("DriverError", ExitStatus.ERROR),
        ("OSError", ExitStatus.ERROR),
        ("PccError", ExitStatus.ERROR),
        ("SomethingNew", ExitStatus.ERROR),
    ],
)
def test_the_error_type_a_site_names_decides_the_exit_status(named: str, status: ExitStatus) -> None:
    exc = ErrorDoc(named, "refused", 3).exception("site a: ")  # what SiteClient.boot raises
    assert boot_exit_status(exc) is status


def test_the_permanent_status_is_distinct_from_every_other() -> None:
    others = [s for s in ExitStatus if s is not ExitStatus.PERMANENT]
    assert ExitStatus.PERMANENT == 42 and ExitStatus.PERMANENT not in others


def test_errors_reaching_the_entry_point_keep_their_statuses() -> None:
    assert job.exit_status(errors.UserInputError("bad")) is ExitStatus.USAGE
    assert job.exit_status(errors.ConfigError("bad")) is ExitStatus.USAGE
    assert job.exit_status(errors.PccError("not a job")) is ExitStatus.ERROR


class FakeClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def boot(self, image: str, cpus: int, cluster: str, key: str) -> Any:
        raise self.exc


@pytest.fixture
def boot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`pcc-job boot` with a site that fails as told, recording what the job publishes."""
    site = SiteEntry("a", "127.0.0.2", 22, "pragma", tmp_path / "id", tmp_path / "kh", 4, 8)
    settings = Settings(state_dir=tmp_path, sites=(site,), timings=Timings(retry_delay_s=7))
    (settings.dag_dir / "r1").mkdir(parents=True)
    (settings.dag_dir / "r1" / "key.pub").write_text("ssh-ed25519 AAAA alice\n")
    seen: dict[str, Any] = {"published": [], "slept": []}
    monkeypatch.setattr(job, "_settings", lambda: settings)
    monkeypatch.setattr(job.JobIdentity, "from_environment", classmethod(lambda cls: cls(1, 0, 5, None)))
    monkeypatch.setattr(job, "publish", lambda attrs, identity=None: seen["published"].append(attrs))
    monkeypatch.setattr(job.time, "sleep", seen["slept"].append)
    # (pcc-job opens a client per site as a context: its calls share one login)
    monkeypatch.setattr(job, "_client", lambda s, name: contextlib.nullcontext(FakeClient(seen["exc"])))
    return seen


def boot(attempt: int, attempts: int) -> int:
    where = ["--reservation", "r1", "--site", "a", "--image", "img", "--cpus", "2"]
    args = job.build_parser().parse_args(
        ["boot", *where, "--attempt", str(attempt), "--attempts", str(attempts)]
    )
    return args.handler(args)


def test_a_permanent_boot_failure_publishes_failed_at_once_and_does_not_wait(
    boot_env: dict[str, Any],
) -> None:
    boot_env["exc"] = errors.CapacityError("site a: not enough CPUs")
    assert boot(attempt=0, attempts=4) == ExitStatus.PERMANENT
    last = boot_env["published"][-1]
    assert last["PccState"] == f'"{PccState.FAILED}"'
    assert last["PccMessage"] == '"attempt 1/4: site a: not enough CPUs"'
    assert boot_env["slept"] == []


def test_a_temporary_boot_failure_publishes_retrying_and_waits_before_dagman_retries(
    boot_env: dict[str, Any],
) -> None:
    boot_env["exc"] = errors.TemporaryError("site a: cannot reach 127.0.0.2:22")
    assert boot(attempt=0, attempts=4) == ExitStatus.ERROR
    assert boot_env["published"][-1]["PccState"] == f'"{PccState.RETRYING}"'
    assert boot_env["slept"] == [7]


def test_a_temporary_failure_of_the_last_attempt_publishes_failed(boot_env: dict[str, Any]) -> None:
    boot_env["exc"] = ProtocolError("site a: garbage")
    assert boot(attempt=3, attempts=4) == ExitStatus.ERROR
    assert boot_env["published"][-1]["PccState"] == f'"{PccState.FAILED}"'
    assert boot_env["slept"] == []
