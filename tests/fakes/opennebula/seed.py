"""A site's OpenNebula as the tests find it: the PCC account, the networks the site
configures, and what the test repository's ``tiny-one`` image names (a persistent image
for frontends, a VM template for computes)."""

from __future__ import annotations

from tests.fakes.opennebula.cloud import FakeCloud

USER = "pcc"
PUBLIC = "pcc-public"  # frontends' public NICs; holds the site's public range
ENT = "pcc-ent0"  # the site's ENT network ent0
POOL = "pcc-private-pool"  # private_mode = "reserve": covers [network] private_cidr
FRONTEND_IMAGE = "tiny-frontend-disk"  # persistent: the driver clones it per cluster
COMPUTE_IMAGE = "tiny-compute-disk"
COMPUTE_TEMPLATE = "tiny-compute"


def demo_cloud(password: str, step: float = 0.05, admin: bool = True, record: bool = True) -> FakeCloud:
    """``admin``: the account is in the oneadmin group (needed for CONTEXT FILES);
    ``record``: keep every document answered (``FakeCloud.documents``)."""
    cloud = FakeCloud(step=step, record=record)
    cloud.add_user(USER, password, admin=admin)
    cloud.add_vnet(
        f"""NAME = "{PUBLIC}"
VN_MAD = "bridge"
BRIDGE = "br-public"
NETWORK_ADDRESS = "192.0.2.0"
NETWORK_MASK = "255.255.255.0"
GATEWAY = "192.0.2.1"
DNS = "192.0.2.53"
AR = [ TYPE = "IP4", IP = "192.0.2.10", SIZE = "40" ]
"""
    )
    cloud.add_vnet(
        f"""NAME = "{ENT}"
VN_MAD = "802.1Q"
PHYDEV = "eth2"
VLAN_ID = "42"
NETWORK_ADDRESS = "172.16.0.0"
NETWORK_MASK = "255.255.255.0"
AR = [ TYPE = "IP4", IP = "172.16.0.10", SIZE = "50" ]
"""
    )
    cloud.add_vnet(
        f"""NAME = "{POOL}"
VN_MAD = "vxlan"
PHYDEV = "eth1"
VLAN_ID = "7"
NETWORK_ADDRESS = "10.1.0.0"
NETWORK_MASK = "255.255.255.0"
AR = [ TYPE = "IP4", IP = "10.1.0.1", SIZE = "254" ]
"""
    )
    cloud.add_image(FRONTEND_IMAGE, persistent=True, size_mb=512)
    compute_image = cloud.add_image(COMPUTE_IMAGE, size_mb=256)
    cloud.add_template(
        COMPUTE_TEMPLATE,
        f"""CPU = "1"
VCPU = "1"
MEMORY = "256"
DISK = [ IMAGE_ID = "{compute_image}" ]
NIC = [ NETWORK = "{PUBLIC}", NETWORK_UNAME = "oneadmin" ]
OS = [ ARCH = "x86_64", BOOT = "disk0" ]
GRAPHICS = [ LISTEN = "0.0.0.0", TYPE = "VNC" ]
CONTEXT = [ NETWORK = "YES", START_SCRIPT = "echo template context" ]
LOGO = "images/logos/debian.png"
""",
    )
    return cloud
