"""What the driver contract suite needs of each back-end under test: the site tool over a
site configured with that driver, and ways to look at the back-end itself (never at the
driver's own notes) to see what a cluster holds there.

The suite drives the real `pragma --json` command (as the site's account where the back-end
needs one), so each driver is exercised as a site runs it: settings from the site TOML,
the JSON protocol out."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcc.dev.site_env import VENV_BIN
from pcc.site.service import SiteService

PragmaRun = Callable[..., tuple[int, dict[str, Any]]]
HALFWAY = "halfway"  # the cluster the suite boots inside ``fail_after_first_node``


@dataclass
class Harness:
    name: str  # the driver's name
    service: SiteService  # the site tool's service over a site that uses the driver
    image: str  # a repository image it can boot
    supports_ent: bool
    # cluster -> what the back-end still holds for it (instances, disks, key pairs, security
    # groups, subnets, addresses, VLANs, ...), read from the back-end; [] when nothing
    leftovers: Callable[[str], list[str]]
    # (cluster, node name) -> (user_data, vc_out) as the back-end holds them for the node
    context_of: Callable[[str, str], tuple[str, str]]
    # within it, create_cluster fails after its first node is made
    fail_after_first_node: Callable[[], AbstractContextManager[None]]
    stop: Callable[[], None]  # stops what the harness started
    env: Mapping[str, str] = field(default_factory=dict)  # for `pragma` processes
    # runs `pragma --json ARGS...` (default: as this process's user, on the service's config)
    run: PragmaRun | None = None

    def pragma(self, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any]]:
        if self.run is not None:
            return self.run(*args, timeout=timeout)
        return run_pragma(self.service.config.path, args, {**os.environ, **self.env}, timeout)


def _domain(name: str, memory_mib: int, extra: str) -> str:
    return f"""    <domain type='kvm'>
      <name>{name}</name>
      <memory unit='MiB'>{memory_mib}</memory>
      <vcpu>1</vcpu>
      {extra}
      <devices>
        <disk type='file' device='disk'>
          <driver name='qemu' type='qcow2'/>
          <source file='disk.qcow2'/>
          <target dev='vda' bus='virtio'/>
        </disk>
      </devices>
    </domain>"""


def vc_in(description: str, frontend: tuple[str, int, str], compute: tuple[str, int, str]) -> str:
    """A repository entry (``<vc type='Local Beowulf'>``) of one-disk, one-CPU domains; each
    role is its domain's name, memory (MiB) and one more element (the back-end's
    ``<metadata>``, an ``<os>``)."""
    return (
        f"<vc type='Local Beowulf'>\n  <description>{description}</description>\n"
        f"  <frontend>\n{_domain(*frontend)}\n  </frontend>\n"
        f"  <compute>\n{_domain(*compute)}\n  </compute>\n</vc>\n"
    )


def run_pragma(
    config: Path, args: tuple[str, ...], env: Mapping[str, str], timeout: float
) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [str(VENV_BIN / "pragma"), "--json", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env),
        check=False,
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"pragma {args} printed no JSON: {proc.stdout!r} {proc.stderr!r}") from exc
    doc["_stderr"] = proc.stderr
    return proc.returncode, doc
