"""A real site for tests: an unprivileged site account running the installed `pragma` with
the libvirt driver (its own ``qemu:///session`` daemon) and the sample repository."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SITE_USER = "pcc-site"
TEST_IMAGE = REPO / "images" / "repository" / "tiny"


def site_account() -> pwd.struct_passwd:
    """The account `pragma` runs as: ``pcc-site`` when the tests run as root, else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SITE_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", SITE_USER], check=True)
        return pwd.getpwnam(SITE_USER)


def as_site_user(
    account: pwd.struct_passwd, argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command as the site account with a clean login-like environment."""
    base = {
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
    }
    base.update(env or {})
    cmd = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv]
    if os.geteuid() == 0:
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", account.pw_name, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def start_libvirt_session(account: pwd.struct_passwd) -> int | None:
    """Start the account's session libvirtd under a reaper (fast destroy); returns its pid.

    Without it libvirt would start one on first use, which works too but destroys slowly
    on machines whose PID 1 reaps late (see notes/vms-on-these-machines.md).
    """
    tini = shutil.which("tini")
    if tini is None:
        return None
    sock = Path(account.pw_dir) / ".cache" / "libvirt" / "libvirt-sock"
    probe = (
        as_site_user(account, ["virsh", "-c", "qemu:///session", "uri"], timeout=60)
        if sock.exists()
        else None
    )
    if probe is not None and probe.returncode == 0:
        return None  # a session daemon already serves this account
    env = [
        "/usr/bin/env",
        "-i",
        f"HOME={account.pw_dir}",
        f"USER={account.pw_name}",
        "PATH=/usr/bin:/bin:/usr/sbin",
    ]
    cmd = ["setsid", tini, "-s", "--", "/usr/sbin/libvirtd", "--timeout=600"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", account.pw_name, "--", *env, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sock.exists():
        time.sleep(0.1)
    return proc.pid


def stop_process(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return


@dataclass
class Site:
    """One configured site: its directory, config file and the account running `pragma`."""

    root: Path
    account: pwd.struct_passwd
    forward_address: str
    ports: tuple[int, int]

    @property
    def config(self) -> Path:
        return self.root / "site.toml"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def write_config(self, cpus: int = 4, memory_mb: int = 2048, extra: str = "") -> None:
        self.config.write_text(f"""
[site]
name = "test-site"
deployment_type = "libvirt (qemu, user networking)"
cpus = {cpus}
memory_mb = {memory_mb}
reserve_cpus = 0
reserve_memory_mb = 0
ent_enabled = false

[repository]
path = "{REPO / "images" / "repository"}"

[staging]
path = "{self.staging}"

[driver]
name = "libvirt"
boot_timeout_s = 120

[driver.libvirt]
uri = "qemu:///session"
domain_type = "qemu"
ready_marker = "PCC-READY"

[network]
mode = "user"
forward_address = "{self.forward_address}"
forward_ports = "{self.ports[0]}-{self.ports[1]}"
link_ports = "{self.ports[0] + 1000}-{self.ports[1] + 1000}"
private_cidr = "10.1.0.0/24"
{extra}
""")
        self.config.chmod(0o644)

    def pragma(
        self, *args: str, timeout: float = 300, config: Path | None = None
    ) -> tuple[int, dict[str, Any]]:
        argv = ["pragma", "--json", "--config", str(config or self.config), *args]
        proc = as_site_user(self.account, argv, timeout=timeout)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"pragma {args} printed no JSON: {proc.stdout!r} {proc.stderr!r}") from exc
        doc["_stderr"] = proc.stderr
        return proc.returncode, doc

    def virsh(self, *args: str) -> str:
        proc = as_site_user(self.account, ["virsh", "-c", "qemu:///session", *args], timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def domains(self) -> list[str]:
        return [
            line.strip()
            for line in self.virsh("list", "--all", "--name").splitlines()
            if line.strip().startswith("pcc-")
        ]

    def allocations(self) -> dict[str, str]:
        path = self.staging / "allocations.json"
        return json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}

    def links(self) -> dict[str, str]:
        path = self.staging / "links.json"
        return json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}

    def leftovers(self, cluster: str) -> list[str]:
        """Everything of a cluster that should be gone after clean."""
        found = [d for d in self.domains() if d.startswith(f"pcc-{cluster}-")]
        cdir = self.staging / "clusters" / cluster
        if cdir.exists():
            found += [str(p) for p in cdir.rglob("*")] or [str(cdir)]
        found += [f"address {slot}" for slot, owner in self.allocations().items() if owner == cluster]
        return found
