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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcc.dev import demo

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SITE_USER = "pcc-site"
TEST_IMAGE = REPO / "images" / "repository" / "tiny"


def site_account() -> pwd.struct_passwd:
    """The account `pragma` runs as: ``pcc-site`` when the tests run as root, else ourselves."""
    return demo.site_account(SITE_USER)


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


start_libvirt_session = demo.start_libvirt_session


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

    def write_config(self, cpus: int = 4, memory_mb: int = 2048) -> None:
        self.config.write_text(
            demo.site_toml(
                "test-site", self.staging, self.forward_address, self.ports, cpus=cpus, memory_mb=memory_mb
            )
        )
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
        """Public addresses (the site's, bridge mode) and forwarded ports (the libvirt
        driver's, user mode) held, slot to cluster."""
        out: dict[str, str] = {}
        for name in ("allocations.json", "forwards.json"):
            path = self.staging / name
            if path.exists() and path.stat().st_size:
                out.update(json.loads(path.read_text()))
        return out

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
