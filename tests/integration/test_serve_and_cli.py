"""`pcc condor start|status|stop` and `pcc serve`, run as a user would, on real pools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from pcc.condor.pool import PersonalPool
from pcc.controller.settings import Settings

pytestmark = [pytest.mark.condor, pytest.mark.slow]

PCC = Path(sys.executable).parent / "pcc"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state directory that reuses the installed HTCondor prefix."""
    installed = Settings.from_env().embedded_pool()
    root = installed.local_dir.parent / "test-pools"
    root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="state-", dir=root))
    os.chmod(state, 0o755)
    (state / "condor").mkdir()
    (state / "condor" / "prefix").symlink_to(installed.prefix)
    yield state
    PersonalPool(prefix=installed.prefix, local_dir=state / "condor" / "local").stop()
    subprocess.run(["rm", "-rf", str(state)], check=False)


def pcc(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PCC), *args],
        env={**os.environ, "PCC_STATE_DIR": str(state), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_condor_start_status_stop_as_a_user_would(state_dir: Path) -> None:
    stopped = pcc(state_dir, "condor", "status")
    assert stopped.returncode == 3
    assert "the pool is not running" in stopped.stderr

    started = pcc(state_dir, "condor", "start")
    assert started.returncode == 0, started.stderr
    status = pcc(state_dir, "condor", "status")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    config = next(line for line in lines if line.startswith("CONDOR_CONFIG="))
    assert config == f"CONDOR_CONFIG={state_dir}/condor/local/condor_config"
    assert f"bin: {state_dir}/condor/prefix/usr/bin" in lines
    assert f"logs: {state_dir}/condor/local/log" in lines

    # The printed settings are enough to use HTCondor's own tools against the pool.
    env = {**os.environ, "CONDOR_CONFIG": config.split("=", 1)[1]}
    for line in lines:
        if line.startswith("CONDOR_IDS="):
            env["CONDOR_IDS"] = line.split("=", 1)[1]
    q = subprocess.run(
        [f"{state_dir}/condor/prefix/usr/bin/condor_q", "-totals"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert q.returncode == 0 and "Total for query: 0 jobs" in q.stdout
    slots = subprocess.run(
        [f"{state_dir}/condor/prefix/usr/bin/condor_status", "-af", "Name"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "slot1@" in slots.stdout

    again = pcc(state_dir, "condor", "start")
    assert again.returncode == 0  # starting a running pool is a no-op
    assert pcc(state_dir, "condor", "stop").stdout.strip() == "pool stopped"
    assert pcc(state_dir, "condor", "stop").stdout.strip() == "pool was not running"


def read_lines(stream: IO[str]) -> list[str]:
    """Lines of ``stream`` as they arrive, collected by a background thread."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True).start()
    return lines


def wait_for(lines: list[str], text: str, timeout: float) -> int:
    """The index of the first line containing ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((i for i, line in enumerate(list(lines)) if text in line), None)
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no line with {text!r} within {timeout:.0f} s: {''.join(lines)}")


def test_serve_starts_the_pool_is_quiet_when_idle_and_stops_everything_on_ctrl_c(state_dir: Path) -> None:
    proc = subprocess.Popen(
        [str(PCC), "serve"],
        env={**os.environ, "PCC_STATE_DIR": str(state_dir), "PCC_POLL_SECONDS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = read_lines(proc.stderr)
    running = wait_for(seen, "pcc serve running; reconcile every 1 s", 90)
    time.sleep(4)  # four passes with nothing to do: nothing at INFO
    idle = [line for line in seen[running + 1 :] if " INFO " in line or " WARNING " in line]
    pool = PersonalPool(prefix=state_dir / "condor" / "prefix", local_dir=state_dir / "condor" / "local")
    master = pool.master_pid()
    assert master is not None, "".join(seen)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    time.sleep(0.2)
    assert proc.returncode == 0, "".join(seen)
    assert idle == []
    assert any("stopping the pool this serve started" in line for line in seen)
    assert pool.master_pid() is None


def test_serve_uses_an_existing_pool_when_pointed_at_it(condor_pool: PersonalPool, tmp_path: Path) -> None:
    env = {
        **condor_pool.client_env(),
        "PCC_CONDOR_CONFIG": str(condor_pool.config_file),
        "PCC_STATE_DIR": str(tmp_path),
        "PCC_POLL_SECONDS": "1",
    }
    proc = subprocess.Popen([str(PCC), "serve"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = read_lines(proc.stderr)
    wait_for(seen, "pcc serve running", 60)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert any(f"using the existing pool of CONDOR_CONFIG={condor_pool.config_file}" in s for s in seen)
    assert proc.returncode == 0
    assert condor_pool.master_pid() is not None  # serve never stops a pool it did not start
