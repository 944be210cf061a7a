"""`pcc condor check` against real pools: the embedded pool's configuration passes, a pool
with settings that make reservations late or stall is named setting by setting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pcc.condor.knobs import CAPACITY
from pcc.condor.pool import PersonalPool

pytestmark = [pytest.mark.condor]

PCC = Path(sys.executable).parent / "pcc"


def pcc_check(pool: PersonalPool, state: Path, *opts: str) -> subprocess.CompletedProcess[str]:
    """`pcc condor check` in its own process, pointed at ``pool`` by a pcc.toml."""
    config = state / "pcc.toml"
    config.write_text(f'[condor]\nconfig = "{pool.config_file}"\n')
    env = {k: v for k, v in pool.client_env().items() if k not in ("PCC_CONDOR_CONFIG", "CONDOR_CONFIG")}
    return subprocess.run(
        [str(PCC), "--state-dir", str(state), "--config", str(config), "condor", "check", *opts],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_embedded_pools_configuration_is_set_up_for_pcc(
    condor_pool: PersonalPool, tmp_path: Path
) -> None:
    proc = pcc_check(condor_pool, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("schedd settings read from the schedd at <127.0.0.1:"), proc.stdout
    assert lines[1].startswith("negotiator settings read from the negotiator at <127.0.0.1:"), proc.stdout
    assert lines[-1] == f"the pool at CONDOR_CONFIG={condor_pool.config_file} is set up for PCC"


def test_a_pool_that_caps_dagmans_and_evaluates_slowly_is_named_with_the_values_to_set(
    condor_pool: PersonalPool, tmp_path: Path
) -> None:
    root = condor_pool.local_dir.parent
    local = Path(tempfile.mkdtemp(prefix="pool-bad-", dir=root))
    os.chmod(local, 0o755)
    pool = PersonalPool(
        prefix=condor_pool.prefix,
        local_dir=local,
        settings={"num_cpus": "1"},
        extra_config="MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER = 150\nPERIODIC_EXPR_INTERVAL = 30",
    )
    try:
        pool.start(timeout=90)
        proc = pcc_check(pool, tmp_path)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("schedd settings read from the schedd at <127.0.0.1:"), proc.stdout
        found = [line for line in lines if " — set " in line]
        assert [line.split(" — ")[1].split(":")[0] for line in found] == [
            "set PERIODIC_EXPR_INTERVAL = 5",
            f"set MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER = {CAPACITY}",
        ], proc.stdout
        assert found[0].startswith("PERIODIC_EXPR_INTERVAL = 30 — ")
        assert found[1].startswith("MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER = 150 — ")
        assert "would make reservations late or stall: 2 settings to change" in lines[-1]

        doc = json.loads(pcc_check(pool, tmp_path, "-o", "json").stdout)
        assert doc["ok"] is False
        assert doc["settings"]["PERIODIC_EXPR_INTERVAL"] == "30"
        assert doc["settings"]["SCHEDULER_UNIVERSE_COOL_DOWN_DURATION"] == "0"

        pool.stop()  # a pool that is down is judged by its configuration files
        down = pcc_check(pool, tmp_path)
        assert down.returncode == 3, down.stdout + down.stderr
        assert down.stdout.startswith("schedd settings read from the configuration files (the schedd did")
        assert sum(" — set " in line for line in down.stdout.splitlines()) == 2, down.stdout
    finally:
        pool.stop()
        shutil.rmtree(local, ignore_errors=True)
