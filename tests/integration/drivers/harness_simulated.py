"""The simulated driver under the contract suite: a site in ``tmp_path`` whose driver is
``simulated`` with ``boot_s = 0`` (user network mode, as the scale benches run it) over the
sample repository (the simulated site boots nothing, so the image need not be built).

The "back-end" is the driver's state file and documents directory, read here as plain JSON.
A boot that fails half way is the driver's own ``failure_rate = 1`` written into the site
file for the length of the block, so that `pragma` processes see it too."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pcc.common.tomlcfg import TomlReader
from pcc.drivers import BUILTIN
from pcc.drivers.simulated.store import digest
from pcc.site import config
from pcc.site.service import SiteService
from tests.integration.drivers.harness import Harness

IMAGE = "tiny"
REPOSITORY = Path(__file__).resolve().parents[3] / "images" / "repository"


def site_text(staging: Path, failure_rate: float = 0.0) -> str:
    return textwrap.dedent(
        f"""\
        [site]
        name = "simulated-test"
        deployment_type = "simulated (boots nothing)"
        cpus = 64
        memory_mb = 65536

        [repository]
        path = "{REPOSITORY}"

        [staging]
        path = "{staging}"

        [driver]
        name = "simulated"
        boot_timeout_s = 60

        [driver.simulated]
        boot_s = 0
        failure_rate = {failure_rate}

        [network]
        mode = "user"
        forward_address = "127.0.0.1"
        forward_ports = "22000-22999"
        private_cidr = "10.1.0.0/24"
        """
    )


def service_for(path: Path) -> SiteService:
    """The site tool's service; the driver built directly while the registry lacks it."""
    cfg = config.load(path)
    if "simulated" in BUILTIN:
        return SiteService(cfg)
    from pcc.drivers.simulated import SimulatedDriver

    service = SiteService(cfg)
    reader = TomlReader(cfg.path, cfg.driver_settings, "driver.simulated")
    return SiteService(cfg, SimulatedDriver.from_toml(reader, service.site_context))


def make_simulated_harness(tmp_path: Path) -> Harness:
    staging = tmp_path / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    site = tmp_path / "site.toml"
    site.write_text(site_text(staging))
    state_file = staging / "simulated.json"
    documents = staging / "simulated-documents"

    def state() -> dict[str, Any]:
        if not state_file.exists():
            return {}
        clusters: dict[str, Any] = json.loads(state_file.read_text())["clusters"]
        return clusters

    def leftovers(cluster: str) -> list[str]:
        entry = state().get(cluster)
        found = [f"node {n['name']} ({n['status']})" for n in entry["nodes"]] if entry else []
        if entry is not None and not entry["nodes"]:
            found.append(f"cluster {cluster} (no nodes)")
        if (documents / f"{cluster}.json").exists():
            found.append(f"documents {documents / f'{cluster}.json'}")
        return found

    def context_of(cluster: str, node: str) -> tuple[str, str]:
        """The node's documents as the back-end keeps them, checked against the cluster's record."""
        entry = state()[cluster]
        assert node in {n["name"] for n in entry["nodes"]}, f"no node {node} in cluster {cluster}"
        kept = json.loads((documents / f"{cluster}.json").read_text())
        assert entry["documents"] == digest(kept), f"{cluster}: documents differ from the recorded digest"
        return kept[node]["user-data"], kept[node]["vc-out.xml"]

    @contextlib.contextmanager
    def fail_after_first_node() -> Iterator[None]:
        """Every boot fails after the frontend is made (``failure_rate = 1``), for `pragma`
        processes too: they read the site file."""
        site.write_text(site_text(staging, failure_rate=1.0))
        try:
            yield
        finally:
            site.write_text(site_text(staging))

    return Harness(
        name="simulated",
        service=service_for(site),
        image=IMAGE,
        supports_ent=True,
        leftovers=leftovers,
        context_of=context_of,
        fail_after_first_node=fail_after_first_node,
        stop=lambda: None,  # nothing runs between commands
    )
