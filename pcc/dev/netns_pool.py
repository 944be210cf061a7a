"""A real multi-host HTCondor pool on one machine: a central manager and schedd host and
execute hosts, each a network namespace on a :class:`~pcc.dev.netns.Lan`, each with its own
``condor_master``, configuration and local directory (``condor_config/pool-host.conf``).
Daemons authenticate to each other with an IDTOKEN signed by the pool's key; tools and PCC
on the schedd's host with FS. For the multi-host test; never used by the demo."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pcc.common.errors import PoolError
from pcc.common.templates import render
from pcc.condor.pool import LOCAL_SUBDIRS, PersonalPool, _runuser

from .netns import Lan

DOMAIN = "pcc.test"


@dataclass
class NetnsPool:
    """Hosts ``manager`` (collector, negotiator, schedd) and ``execute`` (a startd each with
    ``cpus`` slots) of ``lan``, their state under ``root``, binaries from ``prefix``."""

    prefix: Path
    root: Path
    lan: Lan
    manager: str = "cm"
    execute: tuple[str, ...] = ("ex1", "ex2")
    cpus: int = 2
    hosts: dict[str, PersonalPool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (self.manager, *self.execute):
            self.hosts[name] = PersonalPool(prefix=self.prefix, local_dir=self.root / name)

    @property
    def schedd_host(self) -> PersonalPool:
        return self.hosts[self.manager]

    def render(self, name: str) -> str:
        user = self.schedd_host.daemon_user().pw_name
        managing = name == self.manager
        return render(
            "pcc.condor_config",
            "pool-host.conf",
            prefix=self.prefix,
            local_dir=self.hosts[name].local_dir,
            manager=self.lan.hosts[self.manager],
            address=self.lan.hosts[name],
            domain=DOMAIN,
            daemons="MASTER, COLLECTOR, NEGOTIATOR, SCHEDD" if managing else "MASTER, STARTD",
            # On the schedd's host local people and PCC are who the file system says; daemons
            # anywhere are the pool's by their token.
            server_methods="FS, IDTOKENS" if managing else "IDTOKENS",
            client_methods="FS, IDTOKENS" if managing else "IDTOKENS",
            daemon_ids=f"condor@{DOMAIN} {user}@{DOMAIN}",
            domain_users=f"*@{DOMAIN}",
            # Relaxed only for state under /tmp (a checkout there), as the personal pool does.
            dagman_use_strict="0" if self.hosts[name].under_tmp else "1",
            max_local_jobs="5000",
            num_cpus=str(self.cpus),
            debug=os.environ.get("PCC_POOL_DEBUG", ""),
        )

    def write(self) -> None:
        """Every host's directories and configuration, the pool's signing key and the
        daemons' token (made offline from the key, as an admin would)."""
        user = self.schedd_host.daemon_user()
        for name, host in self.hosts.items():
            for sub in ("", *LOCAL_SUBDIRS):
                (host.local_dir / sub).mkdir(parents=True, exist_ok=True)
            host.config_file.write_text(self.render(name))
        manager = self.schedd_host.local_dir
        (manager / "passwords.d").mkdir(exist_ok=True)
        key = manager / "passwords.d" / "POOL"
        key.write_bytes(secrets.token_bytes(32))
        key.chmod(0o600)
        made = subprocess.run(
            [
                str(self.schedd_host.bin_dir / "condor_token_create"),
                "-identity",
                f"condor@{DOMAIN}",
                "-key",
                "POOL",
            ],
            env=self.schedd_host.client_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0 or not made.stdout.strip():
            raise PoolError(f"condor_token_create failed: {made.stderr.strip()}")
        for host in self.hosts.values():  # as an admin copies it to each host
            tokens = host.local_dir / "tokens.d"
            tokens.mkdir(exist_ok=True)
            (tokens / "condor").write_text(made.stdout)
            (tokens / "condor").chmod(0o600)
        if os.geteuid() == 0:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        for host in self.hosts.values():
            for d in ("passwords.d", "tokens.d"):
                if (host.local_dir / d).exists():
                    (host.local_dir / d).chmod(0o700)

    def start(self, timeout: float = 90.0) -> None:
        """Start the central manager, then the execute hosts; wait until the collector has
        the schedd and every execute host's slots."""
        self.write()
        user = self.schedd_host.daemon_user()
        for name, host in self.hosts.items():
            env = {"CONDOR_CONFIG": str(host.config_file), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
            master = [str(host.sbin_dir / "condor_master"), "-pidfile", str(host.pid_file)]
            if os.geteuid() == 0:
                master = [
                    _runuser(),
                    "-u",
                    user.pw_name,
                    "--",
                    "/usr/bin/env",
                    *(f"{k}={v}" for k, v in env.items()),
                    *master,
                ]
            proc = subprocess.run(
                self.lan.on(name, master), env=env, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise PoolError(f"condor_master on {name} failed to start: {proc.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.schedds() and len(self.execute_hosts()) == len(self.execute):
                return
            time.sleep(0.5)
        raise PoolError(
            f"the pool did not come up within {timeout:.0f} s: schedds {self.schedds()}, "
            f"execute hosts {self.execute_hosts()}; logs under {self.root}/*/log"
        )

    def tool(self, name: str, *args: str, host: str | None = None, timeout: float = 60) -> str:
        """An HTCondor command-line tool run on ``host`` (default: the schedd's)."""
        where = host or self.manager
        pool = self.hosts[where]
        proc = subprocess.run(
            self.lan.on(where, [str(pool.bin_dir / name), *args]),
            env=pool.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise PoolError(f"{name} {' '.join(args)} on {where}: {proc.stderr.strip()}")
        return proc.stdout

    def schedds(self) -> list[str]:
        try:
            return self.tool("condor_status", "-schedd", "-af", "Name", timeout=20).split()
        except (PoolError, subprocess.TimeoutExpired):
            return []

    def execute_hosts(self) -> set[str]:
        """The machines whose slots the collector has."""
        try:
            return set(self.tool("condor_status", "-startd", "-af", "Machine", timeout=20).split())
        except (PoolError, subprocess.TimeoutExpired):
            return set()

    def machine(self, name: str) -> str:
        """How HTCondor names ``name``'s host (NO_DNS: from its address)."""
        return f"{self.lan.hosts[name].replace('.', '-')}.{DOMAIN}"

    def stop(self) -> None:
        for host in reversed(list(self.hosts.values())):
            host.stop()
