"""A controller under test: its own state directory and pcc.toml, the session's HTCondor
pool, and SSH sites; reconcile passes are driven by the test (or by `pcc serve`)."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcc.condor.adapter import CondorAdapter
from pcc.condor.dag import JobEnvironment, default_pcc_job
from pcc.condor.pool import PersonalPool
from pcc.controller.gauges import export_gauges
from pcc.controller.model import State
from pcc.controller.orphans import find_orphans
from pcc.controller.probes import Probe, run_probes
from pcc.controller.reconcile import Reconciler
from pcc.controller.service import Service
from pcc.controller.settings import Settings
from pcc.controller.store import Store

from .site_env import VENV_BIN
from .ssh_sites import SSH_PORT, SshSite


@dataclass
class Controller:
    state: Path
    config: Path
    settings: Settings
    store: Store
    service: Service
    reconciler: Reconciler
    user_key: Path  # the scientist's private key
    pool: PersonalPool

    def reconcile(self) -> None:
        out = self.reconciler.reconcile_once()
        assert out.ok, out.errors

    def probe(self) -> list[Probe]:
        """The probe job, as `pcc serve` schedules it."""
        return run_probes(self.settings, self.store, self.reconciler.condor)

    def orphans(self) -> list[tuple[str, str]]:
        """The orphan scan job, as `pcc serve` schedules it."""
        return find_orphans(self.settings, self.store, self.reconciler.condor)

    def gauges(self) -> None:
        export_gauges(self.settings, self.store)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reconcile()
            if predicate():
                return
            time.sleep(interval)
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}; "
            f"events: {[(e.site, e.to_state, e.why) for e in self.store.events()][-8:]}"
        )

    def state_of(self, rid: str, site: str) -> State:
        return next(a.state for a in self.store.reservation(rid).allocations if a.site == site)

    def wait_state(
        self, rid: str, site: str, target: State, timeout: float = 120, interval: float = 0.5
    ) -> None:
        self.wait(
            lambda: self.state_of(rid, site) is target, timeout, f"{rid}@{site} to be {target}", interval
        )

    def condor_q(self, *args: str) -> str:
        return subprocess.run(
            [str(self.pool.bin_dir / "condor_q"), *args],
            env=self.pool.client_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def condor_status(self, *args: str) -> str:
        return subprocess.run(
            [str(self.pool.bin_dir / "condor_status"), *args],
            env=self.pool.client_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def user_public_key(self) -> str:
        return Path(f"{self.user_key}.pub").read_text()


def write_config(
    state: Path,
    pool: PersonalPool,
    sites: list[SshSite],
    controller_key: Path,
    known_hosts: Path,
    extra_sites: str = "",
    timings: dict[str, float] | None = None,
    boot_universe: str = "local",
) -> Path:
    """``timings`` overrides the test timings below (a bench's slower polls, say)."""
    t = {"watch_poll_s": 1.0, "ssh_timeout_s": 5.0, "boot_lead_s": 0, **(timings or {})}
    lines = [
        f'state_dir = "{state}"',
        "",
        "[condor]",
        f'config = "{pool.config_file}"',
        f'boot_universe = "{boot_universe}"',
        "",
        "[timings]",
        f"boot_lead_s = {t['boot_lead_s']}",
        "reconcile_s = 1",
        f"watch_poll_s = {t['watch_poll_s']}",
        "boot_retries = 2",
        "retry_delay_s = 1",
        f"ssh_timeout_s = {t['ssh_timeout_s']}",
        "boot_timeout_s = 120",
        "",
        "[metrics]",
        "port = 0",  # several controllers under test at once: none takes the default port
        "",
    ]
    for s in sites:
        lines += [
            "[[sites]]",
            f'name = "{s.name}"',
            f'host = "{s.address}"',
            f"port = {SSH_PORT}",
            f'user = "{s.site.account.pw_name}"',
            f'key = "{controller_key}"',
            f'known_hosts = "{known_hosts}"',
            "cpus = 4",
            "memory_gb = 2",
            'deployment_type = "libvirt (qemu)"',
            f'pragma = "{VENV_BIN / "pragma"}"',
            f'pragma_config = "{s.site.config}"',
            "",
        ]
    path = state / "pcc.toml"
    path.write_text("\n".join(lines) + extra_sites)
    path.chmod(0o644)
    return path


def make_controller(
    state: Path,
    pool: PersonalPool,
    sites: list[SshSite],
    controller_key: Path,
    known_hosts: Path,
    user_key: Path,
    extra_sites: str = "",
    timings: dict[str, float] | None = None,
) -> Controller:
    config = write_config(state, pool, sites, controller_key, known_hosts, extra_sites, timings)
    settings = Settings.from_env(config=config)
    store = Store(settings.database)
    owner = pool.daemon_user().pw_name
    env = JobEnvironment(default_pcc_job(), pool.config_file, config, state)
    reconciler = Reconciler(settings, store, CondorAdapter(), env, owner)
    run_probes(settings, store, reconciler.condor)  # as `pcc serve` does first: health and catalogs
    return Controller(state, config, settings, store, Service(settings, store), reconciler, user_key, pool)


def chown_tree(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)


def ssh_login(
    private: Path, address: str, port: int, command: str, timeout: float = 60, interval: float = 0.5
) -> str:
    deadline = time.monotonic() + timeout
    last: Any = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [
                "ssh",
                "-i",
                str(private),
                "-p",
                str(port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
                f"root@{address}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
        last = proc.stderr
        time.sleep(interval)
    raise AssertionError(f"ssh to {address}:{port} failed: {last}")


@dataclass
class Served:
    """`pcc serve` running over a test controller's configuration (its loop, API and web
    page); ``url`` is where the API and page answer. The test must not run reconcile
    passes of its own meanwhile: `pcc serve` runs them."""

    url: str
    proc: subprocess.Popen[str]
    lines: list[str]

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_controller(ctl: Controller, timeout: float = 60, **env: str) -> Served:
    """Start `pcc serve --config <ctl's>` with its API on a free loopback port."""
    return serve_config(ctl.config, timeout=timeout, **env)


def serve_config(config: Path, on: Sequence[str] = (), timeout: float = 60, **env: str) -> Served:
    """Start `pcc serve --config CONFIG` with its API on a free loopback port; ``on``
    prefixes its command (``ip netns exec NS``: on a host of a test's own network)."""
    proc = subprocess.Popen(
        [*on, str(VENV_BIN / "pcc"), "--config", str(config), "serve"],
        env={**os.environ, "PCC_API_LISTEN": "127.0.0.1:0", **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if found := re.search(r"web page on (http://\S+?)/ ", line):
                return Served(found.group(1), proc, lines)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"pcc serve did not start its API: {''.join(lines)[-3000:]}")
