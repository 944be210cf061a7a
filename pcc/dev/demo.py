"""A local demo site for `make run` (and the tests): a site account running `pragma` with the
libvirt driver and the sample repository, behind its own OpenSSH server on a loopback
address, and a controller configuration (pcc.toml) that knows it.

Everything lives under the state directory; nothing listens beyond 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

from pcc.common.errors import PccError
from pcc.controller.settings import Settings

log = logging.getLogger(__name__)

SSH_PORT = 2222
DEMO_LOGIN = "demo"  # the web page's demo account (an admin)
# The sample repository ships inside the package (pcc.images is the checkout's images/).
PACKAGED_IMAGES = Path(str(resources.files("pcc.images")))
REPOSITORY = PACKAGED_IMAGES / "repository"


def demo_repository(state: Path) -> Path:
    """The repository the demo site serves: the packaged one when its tiny image is built
    (a checkout after `make image`), else a copy in the state directory with the image built
    there once by the packaged script (an installed wheel, whose package is read-only)."""
    if (REPOSITORY / "tiny" / "initrd.img").exists():
        return REPOSITORY
    target = state / "demo" / "repository"
    for source in [REPOSITORY / "vcdb.txt", *REPOSITORY.glob("*/vc-in.xml")]:
        copy = target / source.relative_to(REPOSITORY)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    if not (target / "tiny" / "initrd.img").exists():
        log.info("building the demo image into %s (once)", target / "tiny")
        build = subprocess.run(
            ["bash", str(PACKAGED_IMAGES / "build_test_image.sh"), str(target / "tiny")],
            env={**os.environ, "PCC_STATE_DIR": str(state)},
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            raise PccError(f"cannot build the demo image in {target / 'tiny'}: {build.stderr.strip()[-500:]}")
    for path in [target, *target.rglob("*")]:  # the site account reads it
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def make_keypair(path: Path, comment: str = "") -> Path:
    """An ed25519 key pair at ``path`` (and ``path``.pub), made once; returns ``path``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
        )
    return path


def site_account(name: str) -> pwd.struct_passwd:
    """The account a site's tool runs as: ``name`` (created, unlocked for key logins) when
    root, else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    # useradd leaves the account locked, and sshd refuses even keys for locked accounts.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return pwd.getpwnam(name)


def start_libvirt_session(account: pwd.struct_passwd) -> int | None:
    """Start the account's session libvirtd under a reaper (fast destroy on machines whose
    PID 1 reaps late); None when one already runs or tini is missing (libvirt then starts
    its own on first use)."""
    tini = shutil.which("tini")
    sock = Path(account.pw_dir) / ".cache" / "libvirt" / "libvirt-sock"
    if tini is None or sock.exists():
        return None
    env = [
        "/usr/bin/env",
        "-i",
        f"HOME={account.pw_dir}",
        f"USER={account.pw_name}",
        "PATH=/usr/bin:/bin:/usr/sbin",
    ]
    cmd = [*env, "setsid", tini, "-s", "--", "/usr/sbin/libvirtd", "--timeout=600"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", account.pw_name, "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sock.exists():
        time.sleep(0.1)
    return proc.pid


def start_sshd(
    directory: Path,
    address: str,
    account: pwd.struct_passwd,
    authorized: str,
    path_dirs: str,
    on: Sequence[str] = (),
) -> tuple[int, str]:
    """An sshd for one site on ``address``:2222 only (own host key, key logins for
    ``account`` only, no root); returns its pid and its host public key. ``on`` prefixes
    its command (``ip netns exec NS``: a host of a test's own network)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    make_keypair(host_key)
    host_key.chmod(0o600)
    ssh_dir = Path(account.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(authorized)
    (ssh_dir / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, account.pw_uid, account.pw_gid)
    config = directory / "sshd_config"
    pid_file = directory / "sshd.pid"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}:{SSH_PORT}",
                f"HostKey {host_key}",
                f"PidFile {pid_file}",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                "UsePAM no",
                f"AllowUsers {account.pw_name}",
                "StrictModes yes",
                "PrintMotd no",
                # A burst of reservations that begin together logs in at once: OpenSSH's
                # default (10:30:100) drops logins past 10 unauthenticated ones at a time.
                "MaxStartups 500:30:2000",
                f"SetEnv PATH={path_dirs}",
                "LogLevel INFO",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)
    pid_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [*on, "/usr/sbin/sshd", "-f", str(config), "-E", str(directory / "sshd.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PccError(f"sshd for the site on {address}:{SSH_PORT} did not start: {proc.stderr.strip()}")
    try:
        pid = wait_for_pid_file(pid_file, f"sshd for the site on {address}:{SSH_PORT}")
    except PccError as exc:
        said = (
            (directory / "sshd.log").read_text(errors="replace")[-500:].strip()
            if (directory / "sshd.log").exists()
            else ""
        )
        raise PccError(
            f"{exc} (is another server listening there?); its log says: {said or 'nothing'}"
        ) from None
    host_pub = " ".join((directory / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    return pid, host_pub


def wait_for_pid_file(pid_file: Path, what: str, timeout_s: float = 10.0) -> int:
    """The pid a daemon writes to ``pid_file``, once the whole line is there: a
    daemon creates the file before it writes it, so under load a reader can see
    it empty or half written."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = pid_file.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n") and text.strip().isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            raise PccError(f"{what} wrote no pid to {pid_file} within {timeout_s:.0f} s")
        time.sleep(0.05)


def site_toml(
    name: str,
    staging: Path,
    address: str,
    ports: tuple[int, int],
    repository: Path = REPOSITORY,
    cpus: int = 4,
    memory_mb: int = 2048,
) -> str:
    return f"""# Site {name}: written by pcc/demo.py
[site]
name = "{name}"
deployment_type = "libvirt (qemu, user networking)"
cpus = {cpus}
memory_mb = {memory_mb}
reserve_cpus = 0
reserve_memory_mb = 0
ent_enabled = false

[repository]
path = "{repository}"

[staging]
path = "{staging}"

[driver]
name = "libvirt"
boot_timeout_s = 120

[driver.libvirt]
uri = "qemu:///session"
domain_type = "qemu"
ready_marker = "PCC-READY"

[network]
mode = "user"
forward_address = "{address}"
forward_ports = "{ports[0]}-{ports[1]}"
link_ports = "{ports[0] + 1000}-{ports[1] + 1000}"
private_cidr = "10.1.0.0/24"
"""


@dataclass
class DemoSite:
    """What `make run` started for its demo site, so that it can stop it again."""

    config: Path
    pids: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)


def start_demo(state: Path, pool_user: str | None, address: str = "127.0.0.2") -> DemoSite:
    """Set up (idempotently) and start the demo site; write pcc.toml unless one exists."""
    repository = demo_repository(state)
    account = site_account("pcc-demo")
    root = state / "demo"
    site_dir = root / "site"
    for d in (root, site_dir):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(site_dir, account.pw_uid, account.pw_gid)
    (site_dir / "site.toml").write_text(
        site_toml("demo", site_dir / "staging", address, (22000, 22099), repository)
    )
    (site_dir / "site.toml").chmod(0o644)
    keys = root / "controller"
    keys.mkdir(exist_ok=True)
    make_keypair(keys / "id_ed25519", "pcc-controller")
    venv_bin = Path(sys.executable).parent
    pid, host_pub = start_sshd(
        root / "sshd",
        address,
        account,
        (keys / "id_ed25519.pub").read_text(),
        f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
    )
    (keys / "known_hosts").write_text(f"[{address}]:{SSH_PORT} {host_pub}\n")
    if pool_user and os.geteuid() == 0:  # the pool's jobs read the key and known hosts
        user = pwd.getpwnam(pool_user)
        for path in (keys, *keys.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
    daemon = start_libvirt_session(account)
    config = state / "pcc.toml"
    if not config.exists():
        config.write_text(f"""# Written by `make run` (pcc/demo.py): the embedded pool and one demo site.
[timings]
boot_lead_s = 10
reconcile_s = 2
watch_poll_s = 5

[[sites]]
name = "demo"
host = "{address}"
port = {SSH_PORT}
user = "{account.pw_name}"
key = "{keys / "id_ed25519"}"
known_hosts = "{keys / "known_hosts"}"
cpus = 4
memory_gb = 2
deployment_type = "libvirt (qemu, user networking)"
pragma = "{venv_bin / "pragma"}"
pragma_config = "{site_dir / "site.toml"}"
""")
    return DemoSite(config=config, pids=[pid], groups=[daemon] if daemon else [])


def welcome(settings: Settings, out: TextIO, url: str | None = None) -> None:
    """Give the person at the terminal the web page's address and a demo login (``url``:
    where `pcc serve` serves it; None when off), a key and the commands for a first
    reservation."""
    import getpass

    from pcc.controller.service import Actor, Service
    from pcc.controller.store import Store

    user = os.environ.get("PCC_USER") or getpass.getuser()
    key = settings.state_dir / "demo" / "user" / "id_ed25519"
    make_keypair(key, f"{user}@pcc-demo")
    store = Store(settings.database)
    service = Service(settings, store)
    operator = Actor(user, admin=True)
    if store.user(user) is None:
        service.add_user(operator, user, "", Path(f"{key}.pub").read_text(), admin=True)
    # The web page's demo login: a fresh password at every start (only its hash is stored).
    if store.user(DEMO_LOGIN) is None:
        service.add_user(operator, DEMO_LOGIN, "", Path(f"{key}.pub").read_text(), admin=True)
    password = secrets.token_urlsafe(9)
    service.set_password(operator, DEMO_LOGIN, password)
    page = (
        f"The web page: {url}/  log in as {DEMO_LOGIN!r} with password {password!r} "
        f"(new at every start);\nthe REST API: {url}/api/v1 (docs: {url}/api/docs).\n"
        if url
        else ""
    )
    pcc = f"{Path(sys.executable).parent / 'pcc'} --state-dir {settings.state_dir}"
    pool = settings.embedded_pool()
    ids = pool.client_env().get("CONDOR_IDS")
    print(
        f"""
PCC is starting with a demo site ("demo": sshd on 127.0.0.2:{SSH_PORT}, the tiny test image).
{page}
Or, in another shell, make a first reservation and watch it:

  {pcc} reserve --site demo:2 --image tiny --begin now+15s --duration 10m
  {pcc} list               # then: {pcc} show ID   (states, events, how to log in)
  export CONDOR_CONFIG={pool.config_file}{f" CONDOR_IDS={ids}" if ids else ""}
  {pool.bin_dir}/condor_q -af PccReservation PccSite PccState PccNodesUp
  ssh -i {key} -p PORT root@127.0.0.2    # PORT as `pcc show` prints it

Ctrl-C stops PCC, the demo site and the pool.
""",
        file=out,
        flush=True,
    )
