"""The XML documents the fake answers with, element for element as oned writes them
(``to_xml``/``to_xml_short`` of VirtualMachine, VMTemplate, Image and VirtualNetwork) and in
the order OpenNebula's XSDs (``xsd/``) require: no namespace, as oned sends them.

Template bodies (TEMPLATE, USER_TEMPLATE) list their attributes by name, as oned's
multimap does; a VM's TEMPLATE follows vm.xsd's sequence (the same order for every
attribute the fake puts there). Address ranges carry only the elements vnet.xsd allows
(oned also writes a range's own attributes, such as GATEWAY, which the XSD does not have).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from lxml import etree

from tests.fakes.opennebula.cloud import (
    ACTIVE,
    DONE,
    RUNNING,
    VM,
    VM_TEMPLATE_ORDER,
    AddressRange,
    Image,
    Owned,
    VMTemplate,
    VNet,
)
from tests.fakes.opennebula.syntax import Template

E = etree.SubElement


def _text(parent: etree._Element, tag: str, value: object) -> etree._Element:
    el = E(parent, tag)
    el.text = str(value)
    return el


def _ids(parent: etree._Element, tag: str, ids: Iterable[int]) -> None:
    el = E(parent, tag)
    for i in sorted(ids):
        _text(el, "ID", i)


def _owner(parent: etree._Element, obj: Owned) -> None:
    for tag, value in (
        ("ID", obj.id),
        ("UID", obj.owner.id),
        ("GID", obj.owner.gid),
        ("UNAME", obj.owner.name),
        ("GNAME", obj.owner.gname),
        ("NAME", obj.name),
    ):
        _text(parent, tag, value)


def _permissions(parent: etree._Element) -> None:
    el = E(parent, "PERMISSIONS")
    for tag, value in zip(
        ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A", "OTHER_U", "OTHER_M", "OTHER_A"),
        (1, 1, 0, 0, 0, 0, 0, 0, 0),
        strict=True,
    ):
        _text(el, tag, value)


def _attributes(parent: etree._Element, items: Iterable[tuple[str, str | dict[str, str]]]) -> None:
    for name, value in items:
        el = E(parent, name)
        if isinstance(value, dict):
            for key in sorted(value):
                _text(el, key, value[key])
        else:
            el.text = value


def template_body(parent: etree._Element, tag: str, tmpl: Template) -> None:
    """A template as oned's Template::to_xml: attributes sorted by name, each vector's too."""
    el = E(parent, tag)
    _attributes(el, sorted(tmpl.items, key=lambda item: item[0]))


def _vm_template(parent: etree._Element, vm: VM) -> None:
    el = E(parent, "TEMPLATE")
    rank = {name: i for i, name in enumerate(VM_TEMPLATE_ORDER)}
    _attributes(el, sorted(vm.template.items, key=lambda item: rank[item[0]]))


def _tostring(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode")


# -- VMs -------------------------------------------------------------------------------------
def _monitoring(vm: VM, short: bool) -> etree._Element:
    el = etree.Element("MONITORING")
    if vm.state == ACTIVE and vm.lcm == RUNNING:
        memory = int(vm.template.text("MEMORY") or 0) * 1024
        if short:
            _text(el, "CPU", "1.0")
            _text(el, "MEMORY", memory)
            _text(el, "STATE", "a")
        else:
            _text(el, "CPU", "1.0")
            _text(el, "ID", vm.id)
            _text(el, "MEMORY", memory)
            _text(el, "TIMESTAMP", vm.last_poll)
    return el


def vm_element(vm: VM) -> etree._Element:
    """``one.vm.info``: the VM as vm.xsd describes it."""
    root = etree.Element("VM")
    _owner(root, vm)
    _permissions(root)
    for tag, value in (
        ("LAST_POLL", vm.last_poll),
        ("STATE", vm.state),
        ("LCM_STATE", vm.lcm),
        ("PREV_STATE", vm.prev_state),
        ("PREV_LCM_STATE", vm.prev_lcm),
        ("RESCHED", 0),
        ("STIME", vm.stime),
        ("ETIME", vm.etime),
        ("DEPLOY_ID", vm.deploy_id),
    ):
        _text(root, tag, value)
    root.append(_monitoring(vm, short=False))
    _ids(root, "SCHED_ACTIONS", [])
    _vm_template(root, vm)
    template_body(root, "USER_TEMPLATE", vm.user_template)
    records = E(root, "HISTORY_RECORDS")
    for h in vm.history:
        rec = E(records, "HISTORY")
        for tag, value in (
            ("OID", vm.id),
            ("SEQ", h["SEQ"]),
            ("HOSTNAME", h["HOSTNAME"]),
            ("HID", h["HID"]),
            ("CID", h["CID"]),
            ("STIME", h["STIME"]),
            ("ETIME", h.get("ETIME", 0)),
            ("VM_MAD", "kvm"),
            ("TM_MAD", "ssh"),
            ("DS_ID", h["DS_ID"]),
            ("PLAN_ID", -1),
            ("ACTION_ID", -1),
            ("PSTIME", h["STIME"]),
            ("PETIME", h["STIME"]),
            ("RSTIME", h["STIME"]),
            ("RETIME", h.get("ETIME", 0)),
            ("ESTIME", 0),
            ("EETIME", 0),
            ("ACTION", 28 if vm.state == DONE else 0),  # TERMINATE_HARD_ACTION
            ("UID", vm.owner.id),
            ("GID", vm.owner.gid),
            ("REQUEST_ID", "-1"),
        ):
            _text(rec, tag, value)
    backups = E(root, "BACKUPS")
    E(backups, "BACKUP_CONFIG")
    _ids(backups, "BACKUP_IDS", [])
    return root


def vm_short_element(vm: VM) -> etree._Element:
    """One VM of ``one.vmpool.info``: oned's VirtualMachine::to_xml_short."""
    root = etree.Element("VM")
    for tag, value in (
        ("ID", vm.id),
        ("UID", vm.owner.id),
        ("GID", vm.owner.gid),
        ("UNAME", vm.owner.name),
        ("GNAME", vm.owner.gname),
        ("NAME", vm.name),
        ("LAST_POLL", vm.last_poll),
        ("STATE", vm.state),
        ("LCM_STATE", vm.lcm),
        ("RESCHED", 0),
        ("STIME", vm.stime),
        ("ETIME", vm.etime),
        ("DEPLOY_ID", vm.deploy_id),
    ):
        _text(root, tag, value)
    body = E(root, "TEMPLATE")
    for tag in ("CPU", "MEMORY", "VCPU"):
        _text(body, tag, vm.template.text(tag))
    for disk in vm.template.vectors("DISK"):
        el = E(body, "DISK")
        for key in (
            "DISK_ID",
            "DATASTORE",
            "DATASTORE_ID",
            "IMAGE",
            "IMAGE_ID",
            "SIZE",
            "TYPE",
            "CLONE",
            "CLONE_TARGET",
            "LN_TARGET",
            "DISK_SNAPSHOT_TOTAL_SIZE",
        ):
            _text(el, key, disk.get(key, ""))
    for nic in vm.template.vectors("NIC"):
        el = E(body, "NIC")
        for key in (
            "IP",
            "EXTERNAL_IP",
            "IP6",
            "IP6_ULA",
            "IP6_LINK",
            "IP6_GLOBAL",
            "NETWORK_MODE",
            "SCHED_REQUIREMENTS",
            "SCHED_RANK",
        ):
            if nic.get(key):
                _text(el, key, nic[key])
        for key in ("MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS"):
            _text(el, key, nic.get(key, ""))
    graphics = vm.template.get("GRAPHICS")
    if isinstance(graphics, dict):
        _attributes(body, [("GRAPHICS", graphics)])
    root.append(_monitoring(vm, short=True))
    user = E(root, "USER_TEMPLATE")
    keep = (
        "LABELS",
        "ERROR",
        "SCHED_MESSAGE",
        "SCHED_RANK",
        "SCHED_DS_RANK",
        "SCHED_REQUIREMENTS",
        "SCHED_DS_REQUIREMENTS",
        "USER_PRIORITY",
    )
    for tag in keep:
        value = vm.user_template.get(tag)
        if isinstance(value, str) and (value or tag not in ("LABELS", "ERROR", "SCHED_MESSAGE")):
            _text(user, tag, value)
    records = E(root, "HISTORY_RECORDS")
    if vm.history:
        h = vm.history[-1]
        rec = E(records, "HISTORY")
        for tag, value in (
            ("OID", vm.id),
            ("SEQ", h["SEQ"]),
            ("HOSTNAME", h["HOSTNAME"]),
            ("HID", h["HID"]),
            ("CID", h["CID"]),
            ("DS_ID", h["DS_ID"]),
            ("VM_MAD", "kvm"),
            ("TM_MAD", "ssh"),
            ("ACTION", 28 if vm.state == DONE else 0),
        ):
            _text(rec, tag, value)
    return root


def vm_pool(vms: Iterable[VM]) -> str:
    root = etree.Element("VM_POOL")
    for vm in sorted(vms, key=lambda v: v.id):
        root.append(vm_short_element(vm))
    return _tostring(root)


def vm_info(vm: VM) -> str:
    return _tostring(vm_element(vm))


# -- VM templates ----------------------------------------------------------------------------
def template_element(tpl: VMTemplate) -> etree._Element:
    root = etree.Element("VMTEMPLATE")
    _owner(root, tpl)
    _permissions(root)
    _text(root, "REGTIME", tpl.regtime)
    template_body(root, "TEMPLATE", tpl.template)
    return root


def template_info(tpl: VMTemplate) -> str:
    return _tostring(template_element(tpl))


def template_pool(templates: Iterable[VMTemplate]) -> str:
    root = etree.Element("VMTEMPLATE_POOL")
    for tpl in sorted(templates, key=lambda t: t.id):
        root.append(template_element(tpl))
    return _tostring(root)


# -- images ----------------------------------------------------------------------------------
def image_element(img: Image) -> etree._Element:
    root = etree.Element("IMAGE")
    _owner(root, img)
    _permissions(root)
    now = int(time.time())
    for tag, value in (
        ("TYPE", 0),  # OS
        ("DISK_TYPE", 0),  # FILE
        ("PERSISTENT", 1 if img.persistent else 0),
        ("REGTIME", img.regtime),
        ("MODTIME", now),
        ("SOURCE", img.source),
        ("PATH", img.path),
        ("FORMAT", "qcow2"),
        ("FS", ""),
        ("SIZE", img.size_mb),
        ("STATE", img.state),
        ("PREV_STATE", img.prev_state),
        ("RUNNING_VMS", len(img.vms)),
        ("CLONING_OPS", img.cloning_ops),
        ("CLONING_ID", img.cloning_id),
        ("TARGET_SNAPSHOT", -1),
        ("DATASTORE_ID", 1),
        ("DATASTORE", "default"),
    ):
        _text(root, tag, value)
    _ids(root, "VMS", img.vms)
    _ids(root, "CLONES", img.clones)
    _ids(root, "APP_CLONES", [])
    template_body(root, "TEMPLATE", img.template)
    snaps = E(root, "SNAPSHOTS")
    _text(snaps, "ALLOW_ORPHANS", "NO")
    _text(snaps, "CURRENT_BASE", -1)
    _text(snaps, "NEXT_SNAPSHOT", 0)
    E(root, "BACKUP_INCREMENTS")
    return root


def image_info(img: Image) -> str:
    return _tostring(image_element(img))


def image_pool(images: Iterable[Image]) -> str:
    root = etree.Element("IMAGE_POOL")
    for img in sorted(images, key=lambda i: i.id):
        root.append(image_element(img))
    return _tostring(root)


# -- virtual networks ------------------------------------------------------------------------
def _address_range(parent: etree._Element, ar: AddressRange, vnet: VNet, full: bool) -> None:
    el = E(parent, "AR")
    if not full:
        _text(el, "ALLOCATED", "")
    _text(el, "AR_ID", ar.id)
    if ar.first_ip is not None:
        _text(el, "IP", ar.ip(0))
    _text(el, "MAC", ar.mac(0))
    _text(el, "NEXT_INDEX", max(ar.leases, default=-1) + 1)
    if ar.parent_ar is not None:
        _text(el, "PARENT_NETWORK_AR_ID", ar.parent_ar)
    _text(el, "SIZE", ar.size)
    _text(el, "TYPE", ar.type)
    if not full:
        return
    _text(el, "MAC_END", ar.mac(ar.size - 1))
    if ar.first_ip is not None:
        _text(el, "IP_END", ar.ip(ar.size - 1))
    _text(el, "USED_LEASES", len(ar.leases))
    if ar.leases:
        leases = E(el, "LEASES")
        for index in sorted(ar.leases):
            kind, owner = ar.leases[index]
            lease = E(leases, "LEASE")
            if ar.first_ip is not None:
                _text(lease, "IP", ar.ip(index))
            _text(lease, "MAC", ar.mac(index))
            _text(lease, kind, owner)


def vnet_element(vnet: VNet, full: bool) -> etree._Element:
    root = etree.Element("VNET")
    _owner(root, vnet)
    _permissions(root)
    _ids(root, "CLUSTERS", [0])
    _text(root, "BRIDGE", vnet.bridge)
    _text(root, "BRIDGE_TYPE", "linux")
    _text(root, "STATE", vnet.state)
    _text(root, "PREV_STATE", vnet.prev_state)
    _text(root, "PARENT_NETWORK_ID", vnet.parent if vnet.parent >= 0 else "")
    _text(root, "TEMPLATE_ID", -1)
    _text(root, "VN_MAD", vnet.vn_mad)
    _text(root, "PHYDEV", vnet.phydev)
    if vnet.vlan_id is not None:
        _text(root, "VLAN_ID", vnet.vlan_id)
    _text(root, "VLAN_ID_AUTOMATIC", 1 if vnet.vlan_automatic else 0)
    _text(root, "OUTER_VLAN_ID_AUTOMATIC", 0)
    _text(root, "USED_LEASES", vnet.used)
    for tag in ("VROUTERS", "UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS"):
        _ids(root, tag, [])
    template_body(root, "TEMPLATE", vnet.template)
    pool = E(root, "AR_POOL")
    for ar in vnet.ars:
        _address_range(pool, ar, vnet, full)
    return root


def vnet_info(vnet: VNet) -> str:
    return _tostring(vnet_element(vnet, full=True))


def vnet_pool(vnets: Iterable[VNet]) -> str:
    root = etree.Element("VNET_POOL")
    for vnet in sorted(vnets, key=lambda v: v.id):
        root.append(vnet_element(vnet, full=False))
    return _tostring(root)
