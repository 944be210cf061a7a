"""Sites as the controller sees them: an OpenSSH server per site on its own loopback address
(own host keys and authorized_keys, no root login, no passwords) in front of a site account
that runs the installed `pragma` with the libvirt driver and the test image."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pcc.dev import demo

from .site_env import VENV_BIN, Site, as_site_user, start_libvirt_session

SSH_PORT = demo.SSH_PORT


@dataclass
class SshSite:
    name: str
    address: str
    site: Site
    sshd_pid: int | None
    daemon_pid: int | None
    host_key_pub: str

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{SSH_PORT} {self.host_key_pub}"


def make_site(root: Path, name: str, address: str, ports: tuple[int, int], controller_pub: str) -> SshSite:
    user = demo.site_account(f"pcc-{name}")
    site_root = root / name
    site_root.mkdir(parents=True, exist_ok=True)
    site_root.chmod(0o755)
    os.chown(site_root, user.pw_uid, user.pw_gid)
    site = Site(root=site_root, account=user, forward_address=address, ports=ports)
    site.write_config(cpus=4, memory_mb=2048)
    daemon = start_libvirt_session(user)
    # The account's libvirt keeps persistent domains in its home: a run that was killed
    # leaves its clusters there, which a new run's clusters of the same name would meet.
    remove_domains(site)
    pid, host_pub = demo.start_sshd(
        site_root / "sshd", address, user, controller_pub, f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
    )
    return SshSite(name, address, site, pid, daemon, host_pub)


def remove_domains(site: Site) -> None:
    """Destroy and undefine every PCC domain of the site account's libvirt session."""
    for domain in site.domains():
        state = as_site_user(site.account, ["virsh", "-c", "qemu:///session", "domstate", domain]).stdout
        if "running" in state:
            site.virsh("destroy", domain)
        site.virsh("undefine", domain)


def stop_site(s: SshSite) -> None:
    remove_domains(s.site)
    subprocess.run(["pkill", "-u", s.site.account.pw_name, "-f", "pcc.drivers.libvirt.hub"], check=False)
    for pid in (s.sshd_pid,):
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if s.daemon_pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(s.daemon_pid, signal.SIGTERM)
    shutil.rmtree(s.site.root, ignore_errors=True)
