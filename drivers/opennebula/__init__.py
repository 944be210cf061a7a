"""The OpenNebula back-end of `pragma`: :class:`OpenNebulaDriver` speaks OpenNebula's
XML-RPC API through pyone; a node is a VM with a CONTEXT section, a cluster's private
network is an OpenNebula virtual network (or a reservation from one).

Settings (``[driver.opennebula]`` in the site config, read by :class:`OpenNebulaSettings`):

* ``endpoint`` — the XML-RPC URL, e.g. ``http://one.example.org:2633/RPC2``;
* ``user`` and ``password_file`` — the OpenNebula account of the site (one account per
  site: the driver finds its objects among the account's own). The file holds the password
  (or ONE_AUTH's ``user:password``), is read when the first call is made and is never
  logged; a relative path is relative to the site config;
* ``public_network`` — the network (name or ID) frontends' public NIC is on. In bridge
  mode the NIC asks for the site's public address, which that network's ranges must hold;
* ``private_mode`` — ``"create"`` (default): a network per cluster, ``pcc-<cluster>-private``,
  from the ``private_vnet`` table (``VN_MAD`` required, e.g. ``{ VN_MAD = "vxlan",
  PHYDEV = "eth1", AUTOMATIC_VLAN_ID = "YES" }``) in OpenNebula cluster ``vnet_cluster_id``
  (-1: the default), with one single-address range per node holding its planned IP and MAC;
  or ``"reserve"``: the planned addresses reserved from the network ``reserve_from``,
  whose address ranges must cover ``[network] private_cidr``. Every cluster plans the same
  private addresses, so in this mode one cluster at a time holds them (OpenNebula refuses
  a second reservation and that boot fails cleanly), and the cluster shares the configured
  network's segment instead of having one of its own;
* ``ent_networks`` — ENT network names onto OpenNebula networks (``{ ent0 = "ent-vnet" }``):
  a frontend's ENT interface is a NIC on that network. None named: ENT is not supported;
* ``images`` — per repository image and role, what it boots from, overriding the image's
  vc-in.xml (see :mod:`.sources`): ``[driver.opennebula.images.tiny] frontend =
  "template:tiny-fe"``, ``compute = "image:tiny-disk"`` (a name or a numeric ID);
* ``clone_datastore_id`` — where clones of persistent images go (-1: the image's own);
* ``files_dir`` — optional: a directory OpenNebula's daemon can read, where each node's
  vc-out.xml is written and named in CONTEXT ``FILES`` so that it is on the node's context
  CD as a file. CONTEXT/FILES is a restricted attribute: the account must be an
  OpenNebula administrator (oneadmin group). Without it vc-out.xml reaches the node in the
  cloud-init user-data (written to /root/vc-out.xml) and as CONTEXT ``PCC_VC_OUT`` (base64);
* ``request_timeout_s`` (60), ``poll_interval_s`` (2), ``cleanup_timeout_s`` (300).

Networks: in the site's bridge mode the frontend's public NIC asks for the address the site
allocated, so vc-out.xml and OpenNebula agree. In user mode the planner's addresses for the
frontend's public interface are QEMU's NAT numbers; here the NIC gets whatever lease the
public network hands out, which ``list`` reports (bridge mode is the one to use). Private
NICs get exactly the planned addresses, and in ``create`` mode the planned MACs too; public,
ENT and reserved NICs have OpenNebula's MACs (``list`` shows them in ``extra["macs"]``).
Guests configure their NICs from OpenNebula's context (``NETWORK = "YES"``); the planner's
netplan document is not passed on.

``OpenNebulaDriver`` is imported on first use, so that the settings and the template
builders load without pyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcc.drivers.opennebula.settings import OpenNebulaSettings

if TYPE_CHECKING:
    from pcc.drivers.opennebula.driver import OpenNebulaDriver

__all__ = ["OpenNebulaDriver", "OpenNebulaSettings"]


def __getattr__(name: str) -> Any:
    if name == "OpenNebulaDriver":
        from pcc.drivers.opennebula import driver

        return driver.OpenNebulaDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
