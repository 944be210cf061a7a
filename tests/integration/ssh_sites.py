"""Sites as the controller sees them: an OpenSSH server per site on its own loopback address
(own host keys and authorized_keys, no root login, no passwords) in front of a site account
that runs the installed `pragma` with the libvirt driver and the test image."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .site_env import VENV_BIN, Site, as_site_user, start_libvirt_session

SSH_PORT = 2222


def account(name: str) -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    # Accounts made by useradd are locked; sshd refuses even keys for them until unlocked.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return pwd.getpwnam(name)


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


def start_sshd(root: Path, address: str, user: pwd.struct_passwd, authorized: str) -> tuple[int, str]:
    """An sshd for one site, listening on ``address``:2222 only; returns (pid, host public key)."""
    keys = root / "sshd"
    keys.mkdir(parents=True, exist_ok=True)
    host_key = keys / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    host_key.chmod(0o600)
    ssh_dir = Path(user.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(authorized)
    (ssh_dir / "authorized_keys").chmod(0o600)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, user.pw_uid, user.pw_gid)
    config = keys / "sshd_config"
    config.write_text(
        f"ListenAddress {address}:{SSH_PORT}\nHostKey {host_key}\nPidFile {keys / 'sshd.pid'}\n"
        "AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"PermitRootLogin no\nUsePAM no\nAllowUsers {user.pw_name}\nStrictModes yes\nPrintMotd no\n"
        f"SetEnv PATH={VENV_BIN}:/usr/local/bin:/usr/bin:/bin\nLogLevel INFO\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    (keys / "sshd.pid").unlink(missing_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-f", str(config), "-E", str(keys / "sshd.log")], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (keys / "sshd.pid").exists():
        time.sleep(0.05)
    pid = int((keys / "sshd.pid").read_text())
    return pid, " ".join((keys / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def make_site(root: Path, name: str, address: str, ports: tuple[int, int], controller_pub: str) -> SshSite:
    user = account(f"pcc-{name}")
    site_root = root / name
    site_root.mkdir(parents=True, exist_ok=True)
    site_root.chmod(0o755)
    os.chown(site_root, user.pw_uid, user.pw_gid)
    site = Site(root=site_root, account=user, forward_address=address, ports=ports)
    site.write_config(cpus=4, memory_mb=2048)
    daemon = start_libvirt_session(user)
    pid, host_pub = start_sshd(site_root, address, user, controller_pub)
    return SshSite(name, address, site, pid, daemon, host_pub)


def stop_site(s: SshSite) -> None:
    for domain in s.site.domains():
        state = as_site_user(s.site.account, ["virsh", "-c", "qemu:///session", "domstate", domain]).stdout
        if "running" in state:
            s.site.virsh("destroy", domain)
        s.site.virsh("undefine", domain)
    subprocess.run(["pkill", "-u", s.site.account.pw_name, "-f", "pcc.site.hub"], check=False)
    for pid in (s.sshd_pid,):
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if s.daemon_pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(s.daemon_pid, signal.SIGTERM)
    shutil.rmtree(s.site.root, ignore_errors=True)
