"""Many sites with the `simulated` driver behind one OpenSSH server: one site account on
one loopback address, one site file per site (``pragma --config``), each with its own
staging directory. For the scale bench and tests: the real sshd and the real site tool,
with nothing booted. Never used by the demo."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pcc.dev import demo

from .site_env import VENV_BIN

SSH_PORT = demo.SSH_PORT


def simulated_site_text(
    name: str,
    staging: Path,
    address: str,
    cpus: int,
    boot_s: float,
    max_boots: int,
    failure_rate: float = 0.0,
    forward_address: str | None = None,
) -> str:
    """``forward_address`` (default ``address``) is where its clusters' logins would be
    forwarded from: a loopback address (the site tool's user-mode networking allows no other)."""
    return textwrap.dedent(
        f"""\
        # Site {name}: simulated (boots nothing), written by pcc/dev/simulated_sites.py
        [site]
        name = "{name}"
        deployment_type = "simulated (boots nothing)"
        cpus = {cpus}
        memory_mb = {cpus * 1024}
        max_boots = {max_boots}

        [repository]
        path = "{demo.REPOSITORY}"

        [staging]
        path = "{staging}"

        [driver]
        name = "simulated"
        boot_timeout_s = 600

        [driver.simulated]
        boot_s = {boot_s}
        failure_rate = {failure_rate}

        [network]
        mode = "user"
        forward_address = "{forward_address or address}"
        forward_ports = "30000-39999"
        private_cidr = "10.1.0.0/16"
        """
    )


@dataclass
class SimulatedSites:
    """Sites ``names`` at ``address``:2222, all run by ``account`` with their own files."""

    address: str
    account: str
    root: Path
    configs: dict[str, Path]
    sshd_pid: int | None
    host_key_pub: str
    cpus: int
    log: Path = field(default=Path())

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{SSH_PORT} {self.host_key_pub}"

    def controller_toml(self, key: Path, known_hosts: Path) -> str:
        """The controller's ``[[sites]]`` entries for these sites."""
        out = []
        for name, config in self.configs.items():
            out.append(
                "[[sites]]\n"
                f'name = "{name}"\nhost = "{self.address}"\nport = {SSH_PORT}\nuser = "{self.account}"\n'
                f'key = "{key}"\nknown_hosts = "{known_hosts}"\ncpus = {self.cpus}\n'
                f"memory_gb = {self.cpus}\n"
                'deployment_type = "simulated (boots nothing)"\n'
                f'pragma = "{VENV_BIN / "pragma"}"\npragma_config = "{config}"\n'
            )
        return "\n".join(out)

    def logins(self) -> int:
        """Logins the sshd accepted so far (its log's "Accepted publickey" lines)."""
        try:
            return self.log.read_text(errors="replace").count("Accepted publickey")
        except OSError:
            return 0

    def stop(self) -> None:
        if self.sshd_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.sshd_pid, signal.SIGTERM)
            self.sshd_pid = None
        shutil.rmtree(self.root, ignore_errors=True)


def start_simulated_sites(
    root: Path,
    names: list[str],
    address: str,
    controller_pub: str,
    account: str = "pcc-sim",
    cpus: int = 4096,
    boot_s: float = 0.0,
    max_boots: int = 64,
    on: Sequence[str] = (),
    forward_address: str | None = None,
) -> SimulatedSites:
    """``on`` prefixes the sshd's command (``ip netns exec NS``: a host of a test's network);
    ``forward_address`` as in :func:`simulated_site_text`."""
    user = demo.site_account(account)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    configs: dict[str, Path] = {}
    for name in names:
        site_dir = root / name
        (site_dir / "staging").mkdir(parents=True, exist_ok=True)
        config = site_dir / "site.toml"
        config.write_text(
            simulated_site_text(
                name, site_dir / "staging", address, cpus, boot_s, max_boots, forward_address=forward_address
            )
        )
        configs[name] = config
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    pid, host_pub = demo.start_sshd(
        root / "sshd", address, user, controller_pub, f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", on
    )
    return SimulatedSites(
        address, user.pw_name, root, configs, pid, host_pub, cpus, root / "sshd" / "sshd.log"
    )
