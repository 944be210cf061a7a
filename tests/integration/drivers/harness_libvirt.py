"""The libvirt driver under the contract suite: the session's test site (an unprivileged
account with its own ``qemu:///session``), driven through `pragma` as that account."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from lxml import etree

from pcc.dev.site_env import Site, as_site_user
from pcc.site import config
from pcc.site.service import SiteService
from tests.integration.drivers.harness import HALFWAY, Harness


def make_libvirt_harness(site: Site) -> Harness:
    def context_of(cluster: str, node: str) -> tuple[str, str]:
        """The node's seed as the domain has it attached: its NoCloud ISO, read back."""
        xml = etree.fromstring(
            site.virsh("dumpxml", f"pcc-{node}").encode(),
            etree.XMLParser(resolve_entities=False, no_network=True),
        )
        # The seed is the read-only raw disk (a NoCloud ISO labelled cidata).
        (iso,) = xml.xpath("//disk[readonly][driver/@type='raw']/source/@file")
        files = []
        for name in ("user-data", "vc-out.xml"):
            proc = subprocess.run(
                ["isoinfo", "-R", "-i", str(iso), "-x", f"/{name}"],
                capture_output=True,
                text=True,
                check=True,
            )
            files.append(proc.stdout)
        return files[0], files[1]

    @contextlib.contextmanager
    def fail_after_first_node() -> Iterator[None]:
        """A running domain already holds the first compute node's name: the frontend is made
        and started, then starting the compute fails."""
        name = f"pcc-{HALFWAY}-compute-0"
        xml = (
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>16</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><devices/></domain>"
        )
        path = site.root / "blocker.xml"
        path.write_text(xml)
        path.chmod(0o644)
        site.virsh("define", str(path))
        site.virsh("start", name)
        try:
            yield
        finally:
            for verb in ("destroy", "undefine"):
                as_site_user(site.account, ["virsh", "-c", "qemu:///session", verb, name], timeout=60)

    return Harness(
        name="libvirt",
        service=SiteService(config.load(site.config)),
        image="tiny-legacy",
        supports_ent=False,  # the test site runs user networking; ENT needs the bridge mode
        leftovers=site.leftovers,
        context_of=context_of,
        fail_after_first_node=fail_after_first_node,
        stop=lambda: None,  # the session's site fixture stops its libvirt
        run=lambda *args, timeout=300: site.pragma(*args, timeout=timeout),
    )
