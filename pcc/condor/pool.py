"""The embedded personal HTCondor pool: write its configuration, start, stop and describe it.

The daemons always run as an unprivileged user (HTCondor runs no jobs as root): the
invoking user, or, when PCC runs as root, a system account (``pcc`` by default).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pcc.common.errors import PoolError
from pcc.common.templates import render

log = logging.getLogger(__name__)

DEFAULT_SERVICE_USER = "pcc"
LOCAL_SUBDIRS = ("log", "spool", "execute", "lock", "run", "etc")


def _runuser() -> str:
    path = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if path is None:
        raise PoolError("runuser (util-linux) is needed to start HTCondor as an unprivileged user")
    return path


@dataclass(frozen=True)
class PoolStatus:
    """What `pcc condor status` prints."""

    running: bool
    condor_config: Path
    bin_dir: Path
    log_dir: Path
    version: str | None
    master_pid: int | None
    collector: str | None
    daemons: tuple[str, ...] = ()
    # Set when the tools run as root: they must act as the daemons' user.
    condor_ids: str | None = None


@dataclass
class PersonalPool:
    """A personal pool whose binaries live in ``prefix`` and whose state lives in ``local_dir``.

    ``settings`` overrides the template's tunables (``num_cpus``, ``max_local_jobs``,
    ``starter_update_interval``); ``extra_config`` is appended verbatim (tests use it).
    """

    prefix: Path
    local_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    extra_config: str = ""
    service_user: str = DEFAULT_SERVICE_USER

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.local_dir / "condor_config"

    @property
    def bin_dir(self) -> Path:
        return self.prefix / "usr" / "bin"

    @property
    def sbin_dir(self) -> Path:
        return self.prefix / "usr" / "sbin"

    @property
    def libexec_dir(self) -> Path:
        return self.prefix / "usr" / "libexec" / "condor"

    @property
    def log_dir(self) -> Path:
        return self.local_dir / "log"

    @property
    def pid_file(self) -> Path:
        return self.local_dir / "run" / "condor_master.pid"

    @property
    def installed_version(self) -> str | None:
        stamp = self.prefix / ".pcc-condor-installed.json"
        if not stamp.exists():
            return None
        import json

        return json.loads(stamp.read_text()).get("version")

    @property
    def under_tmp(self) -> bool:
        """True when the pool's state is under /tmp, where DAGMan distrusts node logs."""
        return self.local_dir.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())

    # -- identity ------------------------------------------------------------------------
    def daemon_user(self) -> pwd.struct_passwd:
        """The account the daemons run as (created when root and missing)."""
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(self.service_user)
        except KeyError:
            log.info("creating system user %s for the HTCondor daemons", self.service_user)
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    self.service_user,
                ],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(self.service_user)

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for HTCondor command-line tools and bindings talking to this pool."""
        env = dict(os.environ if base is None else base)
        env["CONDOR_CONFIG"] = str(self.config_file)
        env["PATH"] = f"{self.bin_dir}:{self.sbin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        if os.geteuid() == 0:
            user = self.daemon_user()
            env["CONDOR_IDS"] = f"{user.pw_uid}.{user.pw_gid}"
        return env

    # -- configuration -------------------------------------------------------------------
    def render_config(self) -> str:
        values = {
            "prefix": str(self.prefix),
            "local_dir": str(self.local_dir),
            "num_cpus": "4",
            "max_local_jobs": "5000",
            "job_nice": "10",
            # HTCondor's default. Every starter asks the procd for its job's usage this often:
            # at 2 s, a burst of 500 boots flooded the procd (~130 requests a second, each
            # behind a /proc snapshot of ~2000 processes) and the schedd, which registers
            # every new job with the same procd, started ~1 local job a second.
            "starter_update_interval": "300",
            "dagman_use_strict": "0" if self.under_tmp else "1",
            **self.settings,
        }
        text = render("pcc.condor_config", "personal.conf", **values)
        if self.extra_config:
            text += "\n## extra configuration\n" + self.extra_config.strip() + "\n"
        return text

    def write_config(self) -> None:
        user = self.daemon_user()
        for sub in ("", *LOCAL_SUBDIRS):
            (self.local_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.under_tmp:
            log.warning(
                "pool state %s is under /tmp: DAGMan strict mode is off; prefer a state "
                "directory outside /tmp (PCC_STATE_DIR)",
                self.local_dir,
            )
        self.config_file.write_text(self.render_config())
        if os.geteuid() == 0:
            for path in [self.local_dir, *self.local_dir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
            self._check_reachable(user)

    def _check_reachable(self, user: pwd.struct_passwd) -> None:
        for target in (self.config_file, self.sbin_dir / "condor_master"):
            probe = subprocess.run(
                [_runuser(), "-u", user.pw_name, "--", "test", "-r", str(target)],
                capture_output=True,
                check=False,
            )
            if probe.returncode != 0:
                raise PoolError(
                    f"user {user.pw_name} cannot read {target}: make its parent directories "
                    "traversable (chmod o+x) or set PCC_STATE_DIR to a directory it can reach"
                )

    # -- lifecycle -----------------------------------------------------------------------
    def _require_installed(self) -> None:
        if not (self.sbin_dir / "condor_master").exists() or self.installed_version is None:
            raise PoolError(f"HTCondor is not installed in {self.prefix}: run `make install` (or `make run`)")

    def master_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"condor_master" not in cmdline.read_bytes():
            return None
        return pid

    def collector_address(self) -> str | None:
        path = self.log_dir / ".collector_address"
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None
        return lines[0].strip() if lines and lines[0].startswith("<") else None

    def start(self, timeout: float = 60.0) -> PoolStatus:
        """Start the daemons (a no-op when already running) and wait for a schedd and a slot."""
        self._require_installed()
        if self.master_pid() is not None:
            return self.status()
        self.write_config()
        for stale in (self.log_dir / ".collector_address", self.local_dir / "spool" / ".schedd_address"):
            stale.unlink(missing_ok=True)
        user = self.daemon_user()
        env = {"CONDOR_CONFIG": str(self.config_file), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        cmd = [str(self.sbin_dir / "condor_master"), "-pidfile", str(self.pid_file)]
        if os.geteuid() == 0:
            cmd = [
                _runuser(),
                "-u",
                user.pw_name,
                "--",
                "/usr/bin/env",
                *(f"{k}={v}" for k, v in env.items()),
                *cmd,
            ]
        log.info("starting condor_master as %s with CONDOR_CONFIG=%s", user.pw_name, self.config_file)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PoolError(f"condor_master failed to start: {proc.stderr.strip() or proc.stdout.strip()}")
        self.wait_ready(timeout)
        return self.status()

    def wait_ready(self, timeout: float) -> None:
        """Block until the collector knows a schedd and a startd (the pool can run a job)."""
        deadline = time.monotonic() + timeout
        missing: set[str] = {"Schedd", "Startd"}
        while time.monotonic() < deadline:
            if self.collector_address():
                missing = {d for d in ("Schedd", "Startd") if not self._collector_has(d)}
                if not missing:
                    return
            time.sleep(0.25)
        raise PoolError(
            f"the pool did not come up within {timeout:.0f} s (no {', '.join(sorted(missing))} ad); "
            f"see the logs in {self.log_dir}"
        )

    def _collector_has(self, daemon: str) -> bool:
        proc = subprocess.run(
            [str(self.bin_dir / "condor_status"), f"-{daemon.lower()}", "-af", "Name"],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the daemons; returns False when nothing was running."""
        pid = self.master_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_pid() is None:
                return True
            time.sleep(0.2)
        log.warning("condor_master %d did not stop within %.0f s; killing it", pid, timeout)
        os.kill(pid, signal.SIGKILL)
        return True

    def status(self) -> PoolStatus:
        pid = self.master_pid()
        env = self.client_env()
        daemons: tuple[str, ...] = ()
        if pid is not None and shutil.which("condor_status", path=str(self.bin_dir)):
            proc = subprocess.run(
                [str(self.bin_dir / "condor_status"), "-any", "-af", "MyType", "Name"],
                env=env,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            daemons = tuple(line for line in proc.stdout.splitlines() if line.strip())
        return PoolStatus(
            running=pid is not None,
            condor_config=self.config_file,
            bin_dir=self.bin_dir,
            log_dir=self.log_dir,
            version=self.installed_version,
            master_pid=pid,
            collector=self.collector_address() if pid is not None else None,
            daemons=daemons,
            condor_ids=env.get("CONDOR_IDS"),
        )
