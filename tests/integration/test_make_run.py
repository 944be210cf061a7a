"""What `make run` starts (`pcc serve --demo`), used as a newcomer would: the pool, a demo
site behind sshd, the controller; a first reservation runs and is cancelled; Ctrl-C stops
everything it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from pcc.condor.pool import PersonalPool
from pcc.controller.settings import Settings

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]

PCC = Path(sys.executable).parent / "pcc"


def test_serve_demo_runs_a_first_reservation_and_stops_everything_on_ctrl_c() -> None:
    installed = Settings.from_env().embedded_pool()
    root = installed.local_dir.parent / "test-pools"
    root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="demo-", dir=root))
    os.chmod(state, 0o755)
    (state / "condor").mkdir()
    (state / "condor" / "prefix").symlink_to(installed.prefix)
    env = {
        **os.environ,
        "PCC_STATE_DIR": str(state),
        "PCC_DEMO_ADDRESS": "127.0.0.5",
        "PCC_USER": "newcomer",
        "PCC_API_LISTEN": "127.0.0.1:0",
    }
    serve = subprocess.Popen(
        [str(PCC), "serve", "--demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pool = PersonalPool(prefix=state / "condor" / "prefix", local_dir=state / "condor" / "local")

    def pcc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PCC), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    try:
        assert serve.stdout is not None
        intro = ""
        while (line := serve.stdout.readline()) and not line.startswith("Ctrl-C stops"):
            intro += line  # the greeting, up to its last line (or the end: serve died)
        assert "reserve --site demo:2 --image tiny" in intro
        # The greeting names the web page and a demo login that works.
        found = re.search(
            r"The web page: (http://127\.0\.0\.1:\d+)/  log in as 'demo' with password '([^']+)'", intro
        )
        assert found, intro
        url, password = found.groups()
        with httpx.Client(base_url=url, timeout=30) as web:
            assert web.get("/").status_code == 303  # not logged in: to the login page
            form = web.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf, form.text
            page = web.post(
                "/login", data={"name": "demo", "password": password, "csrf": csrf.group(1), "next": "/"}
            )
            assert page.status_code == 303 and "pcc_session" in web.cookies
            assert "Schedule" in web.get("/").text
            assert web.get("/api/openapi.json").json()["openapi"].startswith("3.")
        sshd_pid = int((state / "demo" / "sshd" / "sshd.pid").read_text())
        # The image catalog comes from the site's probes (the first runs as serve starts);
        # until then `pcc images` says so per site instead of printing nothing.
        rows: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            images = pcc("images", "-o", "json")
            assert images.returncode == 0, images.stderr
            rows = json.loads(images.stdout)
            if any("name" in r for r in rows):
                break
            assert rows == [{"site": "demo", "error": "not probed yet"}]
            time.sleep(0.5)
        assert {"site": "demo", "name": "tiny"} in [
            {k: r[k] for k in ("site", "name")} for r in rows if "name" in r
        ]
        reserved = pcc(
            "reserve",
            "--site",
            "demo:1",
            "--image",
            "tiny",
            "--begin",
            "now+2s",
            "--duration",
            "5m",
            "-o",
            "json",
        )
        assert reserved.returncode == 0, reserved.stderr
        rid = json.loads(reserved.stdout)["id"]
        state_of = lambda: json.loads(pcc("show", rid, "-o", "json").stdout)["allocations"][0]["state"]  # noqa: E731
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and state_of() != "running":
            time.sleep(1)
        assert state_of() == "running"
        shown = pcc("show", rid).stdout
        assert "log in: ssh -p" in shown and "root@127.0.0.5" in shown
        assert pcc("cancel", rid).returncode == 0
        while time.monotonic() < deadline + 60 and state_of() != "stopped":
            time.sleep(1)
        assert state_of() == "stopped"
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=60)
    assert serve.returncode == 0
    assert pool.master_pid() is None
    time.sleep(0.5)
    assert (
        not Path(f"/proc/{sshd_pid}").exists()
        or b"sshd" not in Path(f"/proc/{sshd_pid}/cmdline").read_bytes()
    )
    subprocess.run(["rm", "-rf", str(state)], check=False)
