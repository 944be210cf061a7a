"""The Rocks driver under the contract suite: a site in ``tmp_path`` whose ``[driver.rocks]``
command is a private copy of the stand-in ``rocks`` (tests/fakes/rocks), with its own
state file, and a one-image repository whose disk is a small qcow2 (the stand-in boots
nothing; it checks the disk exists and reads the seed a VM would)."""

from __future__ import annotations

import json
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

from pcc.drivers.rocks import naming
from pcc.site import config
from pcc.site.service import SiteService
from tests.fakes import rocks as standin
from tests.integration.drivers.harness import Harness, vc_in

IMAGE = "rocks-tiny"
PREFIX = "pcc-"

VC_IN = vc_in(
    "A disk-booting image for the Rocks stand-in (its disk is empty)",
    ("rocks-tiny-frontend", 256, "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"),
    ("rocks-tiny-compute", 128, "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"),
)

SITE = """[site]
name = "rocks-test"
deployment_type = "rocks (stand-in)"
cpus = 16
memory_mb = 8192

[repository]
path = "{repository}"

[staging]
path = "{staging}"

[driver]
name = "rocks"
boot_timeout_s = 60

[driver.rocks]
command = "{command}"
vlans = "4-9"
poll_interval_s = 0.05
command_timeout_s = 60

[network]
mode = "bridge"
private_cidr = "10.1.0.0/24"
private_bridge = "eth0"

[network.public]
range = "192.0.2.10-192.0.2.20"
netmask = "255.255.255.0"
gateway = "192.0.2.1"
dns = ["192.0.2.53"]
bridge = "eth1"
"""


def make_repository(root: Path) -> Path:
    image = root / IMAGE
    image.mkdir(parents=True, exist_ok=True)
    (root / "vcdb.txt").write_text(f"{IMAGE},{IMAGE}/vc-in.xml\n")
    (image / "vc-in.xml").write_text(VC_IN)
    disk = image / "disk.qcow2"
    if not disk.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    return root


def make_site(tmp_path: Path) -> tuple[Path, Path]:
    """(site config, the stand-in ``rocks``) under ``tmp_path``."""
    program = standin.install(tmp_path / "rocks")
    subprocess.run([str(program), "report", "version"], check=True, capture_output=True)  # a new state
    repository = make_repository(tmp_path / "repository")
    staging = tmp_path / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    site = tmp_path / "site.toml"
    site.write_text(SITE.format(repository=repository, staging=staging, command=program))
    return site, program


def make_rocks_harness(tmp_path: Path) -> Harness:
    site, program = make_site(tmp_path)
    cfg = config.load(site)
    disks = cfg.staging / "rocks"

    def leftovers(cluster: str) -> list[str]:
        found = standin.leftovers(program, naming.frontend_host(PREFIX, cluster))
        directory = disks / cluster
        if directory.exists():
            found += [str(p) for p in directory.rglob("*")] or [str(directory)]
        allocations = cfg.staging / "allocations.json"
        if allocations.exists() and allocations.stat().st_size:
            held = json.loads(allocations.read_text())
            found += [f"address {slot}" for slot, owner in held.items() if owner == cluster]
        return found

    def context_of(cluster: str, node: str) -> tuple[str, str]:
        """What the stand-in read from the VM's CD-ROM when it started it."""
        frontend = naming.frontend_host(PREFIX, cluster)
        booted = standin.read_state(program)["booted"][naming.host_of(cluster, frontend, node)]
        seed = booted["seed"] or {}
        return seed.get("user-data", ""), seed.get("vc-out.xml", "")

    def fail_after_first_node() -> AbstractContextManager[None]:
        """Rocks' own ``add cluster`` refuses the second VM after making the frontend (it
        is not transactional: the frontend VM and the VLAN interfaces stay)."""
        return standin.fault(program, "add cluster", after=1)

    return Harness(
        name="rocks",
        service=SiteService(cfg),
        image=IMAGE,
        supports_ent=False,
        leftovers=leftovers,
        context_of=context_of,
        fail_after_first_node=fail_after_first_node,
        stop=lambda: None,  # nothing runs between commands
        env={"PATH": standin.path_with(program)},
    )
