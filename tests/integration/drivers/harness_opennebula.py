"""The OpenNebula driver under the contract suite: the fake OpenNebula (tests/fakes/opennebula)
on a loopback port, seeded as a site's OpenNebula would be, and a site configured with the
driver in bridge mode (the frontend asks for the site's public address) with an ENT
network. The back-end is looked at through its own API, as OpenNebula's administrator
(``oneadmin``), never through the driver."""

from __future__ import annotations

import base64
import contextlib
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyone

from pcc.common.tomlcfg import TomlReader
from pcc.drivers import BUILTIN
from pcc.site import config
from pcc.site.service import SiteService
from tests.fakes.opennebula import FakeCloud, start_fake_opennebula
from tests.fakes.opennebula.seed import COMPUTE_TEMPLATE, ENT, FRONTEND_IMAGE, PUBLIC, USER, demo_cloud
from tests.integration.drivers.harness import Harness, vc_in

IMAGE = "tiny-one"
PASSWORD = "pcc-fake-secret"

VC_IN = vc_in(
    "Tiny cluster on OpenNebula: frontends from an image, computes from a template",
    (
        "tiny-frontend",
        192,
        f"<metadata><one:opennebula xmlns:one='urn:pcc:opennebula:1' image='{FRONTEND_IMAGE}'/></metadata>",
    ),
    (
        "tiny-compute",
        128,
        "<metadata><one:opennebula xmlns:one='urn:pcc:opennebula:1' "
        f"template='{COMPUTE_TEMPLATE}'/></metadata>",
    ),
)


DRIVER_OPTIONS: dict[str, str] = {
    "user": f'"{USER}"',
    "password_file": '"one.password"',
    "public_network": f'"{PUBLIC}"',
    "private_vnet": '{ VN_MAD = "vxlan", PHYDEV = "eth1", AUTOMATIC_VLAN_ID = "YES" }',
    "ent_networks": f'{{ ent0 = "{ENT}" }}',
    "files_dir": '"files"',
    "poll_interval_s": "0.05",
    "cleanup_timeout_s": "30",
}


def write_site(root: Path, url: str, options: Mapping[str, str | None] | None = None) -> Path:
    """A site configuration using the driver against ``url`` (files under ``root``);
    ``options`` changes [driver.opennebula] (TOML values; None drops a key)."""
    (root / "repository" / IMAGE).mkdir(parents=True, exist_ok=True)
    (root / "repository" / "vcdb.txt").write_text(f"{IMAGE},{IMAGE}/vc-in.xml\n")
    (root / "repository" / IMAGE / "vc-in.xml").write_text(VC_IN)
    secret = root / "one.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    merged = {"endpoint": f'"{url}"', **DRIVER_OPTIONS, **(options or {})}
    driver = "\n".join(f"{k} = {v}" for k, v in merged.items() if v is not None)
    path = root / "site.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [site]
            name = "fake-one"
            deployment_type = "opennebula (fake)"
            cpus = 16
            memory_mb = 8192
            ent_enabled = true

            [repository]
            path = "{root / "repository"}"

            [staging]
            path = "{root / "staging"}"

            [driver]
            name = "opennebula"
            boot_timeout_s = 60
            """
        )
        + f"\n[driver.opennebula]\n{driver}\n\n"
        + textwrap.dedent(
            """\
            [network]
            mode = "bridge"
            private_cidr = "10.1.0.0/24"
            private_bridge = "unused-by-opennebula"

            [network.public]
            range = "192.0.2.20-192.0.2.29"
            netmask = "255.255.255.0"
            gateway = "192.0.2.1"
            dns = ["192.0.2.53"]
            bridge = "unused-by-opennebula"

            [[network.ent]]
            name = "ent0"
            cidr = "172.16.0.0/24"
            bridge = "unused-by-opennebula"
            """
        )
    )
    return path


def service_for(path: Path) -> SiteService:
    """The site tool's service; the driver built directly while the registry lacks it."""
    cfg = config.load(path)
    if "opennebula" in BUILTIN:
        return SiteService(cfg)
    from pcc.drivers.opennebula import OpenNebulaDriver

    service = SiteService(cfg)
    reader = TomlReader(cfg.path, cfg.driver_settings, "driver.opennebula")
    return SiteService(cfg, OpenNebulaDriver.from_toml(reader, service.site_context))


class OneAdmin:
    """What OpenNebula itself holds, asked as its administrator."""

    def __init__(self, url: str, files: Path) -> None:
        self.one: Any = pyone.OneServer(url, session="oneadmin:oneadmin")
        self.files = files

    def vms(self, cluster: str) -> list[Any]:
        return [
            vm
            for vm in self.one.vmpool.info(-2, -1, -1, -1).VM
            if f"PCC/{cluster}" in str(vm.USER_TEMPLATE.get("LABELS", "")).split(",")
            or vm.NAME.startswith(f"pcc-{cluster}-")
        ]

    def leftovers(self, cluster: str) -> list[str]:
        prefix = f"pcc-{cluster}-"
        out = [f"VM {vm.ID} {vm.NAME} (state {vm.STATE}/{vm.LCM_STATE})" for vm in self.vms(cluster)]
        out += [
            f"image {i.ID} {i.NAME}"
            for i in self.one.imagepool.info(-2, -1, -1).IMAGE
            if i.NAME.startswith(prefix)
        ]
        out += [
            f"network {v.ID} {v.NAME}"
            for v in self.one.vnpool.info(-2, -1, -1).VNET
            if v.NAME.startswith(prefix)
        ]
        if (self.files / cluster).exists():
            out.append(f"files {self.files / cluster}")
        return out

    def context(self, cluster: str, node: str) -> dict[str, str]:
        (vm,) = [vm for vm in self.vms(cluster) if f"pcc-{node}" == vm.NAME]
        return dict(self.one.vm.info(int(vm.ID)).TEMPLATE["CONTEXT"])

    def context_of(self, cluster: str, node: str) -> tuple[str, str]:
        ctx = self.context(cluster, node)
        assert ctx["USERDATA_ENCODING"] == "base64" and ctx["PCC_VC_OUT_ENCODING"] == "base64", ctx
        return base64.b64decode(ctx["USER_DATA"]).decode(), base64.b64decode(ctx["PCC_VC_OUT"]).decode()


@dataclass
class FakeSite:
    """A running fake OpenNebula and a site configured to use it."""

    cloud: FakeCloud
    url: str
    stop: Callable[[], None]
    config: Path
    service: SiteService
    admin: OneAdmin


def start_site(
    tmp_path: Path, options: Mapping[str, str | None] | None = None, admin: bool = True
) -> FakeSite:
    """``options``: see :func:`write_site`; ``admin``: the site's OpenNebula account is an
    administrator (CONTEXT FILES needs it)."""
    cloud = demo_cloud(PASSWORD, admin=admin)
    url, stop = start_fake_opennebula(cloud)
    try:
        site = write_site(tmp_path, url, options)
        service = service_for(site)
    except BaseException:
        stop()
        raise
    return FakeSite(cloud, url, stop, site, service, OneAdmin(url, tmp_path / "files"))


def make_opennebula_harness(tmp_path: Path) -> Harness:
    made = start_site(tmp_path)
    cloud, admin = made.cloud, made.admin

    @contextlib.contextmanager
    def fail_after_first_node() -> Iterator[None]:
        """OpenNebula's VM quota lets the site's account make one more VM: the frontend is
        made, the compute refused."""
        with cloud.vms_limited_to(USER, 1):
            yield

    return Harness(
        name="opennebula",
        service=made.service,
        image=IMAGE,
        supports_ent=True,
        leftovers=admin.leftovers,
        context_of=admin.context_of,
        fail_after_first_node=fail_after_first_node,
        stop=made.stop,
    )
