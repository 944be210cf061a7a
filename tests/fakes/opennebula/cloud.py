"""The fake OpenNebula's state, in memory: users, VM templates, images, virtual networks and
VMs, and what oned does with them for the ``one.*`` methods the driver calls.

Time drives the life cycles, as OpenNebula's own drivers would: every ``step`` seconds a
VM moves PENDING -> ACTIVE/PROLOG -> ACTIVE/BOOT -> ACTIVE/RUNNING, a terminated one
SHUTDOWN -> EPILOG -> DONE, a cloned image LOCKED -> READY, a new network LOCK_CREATE ->
READY and a deleted one LOCK_DELETE -> gone. Transitions are applied when the state is next
looked at (no thread of its own).

Errors are raised as :class:`OneError` with OpenNebula's error codes and message forms
(``[one.vm.info] Error getting virtual machine [7].``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.opennebula.syntax import Template, TemplateSyntaxError, parse

# Request::ErrorCode
SUCCESS, AUTHENTICATION, AUTHORIZATION, NO_EXISTS = 0x0, 0x100, 0x200, 0x400
ACTION, RPC_API, INTERNAL, ALLOCATE = 0x800, 0x1000, 0x2000, 0x4000

# VM states (include/VirtualMachine.h)
INIT, PENDING, HOLD, ACTIVE, DONE = 0, 1, 2, 3, 6
LCM_INIT, PROLOG, BOOT, RUNNING, EPILOG, SHUTDOWN, CLEANUP_DELETE, PROLOG_FAILURE = 0, 1, 2, 3, 11, 12, 23, 39
# Image states (include/Image.h)
IMG_READY, IMG_USED, IMG_LOCKED, IMG_DELETE, IMG_USED_PERS = 1, 2, 4, 7, 8
# Virtual network states (include/VirtualNetwork.h)
VN_READY, VN_LOCK_CREATE, VN_LOCK_DELETE = 1, 2, 3

OBJECT_NAMES = {
    "vm": "virtual machine",
    "template": "VM template",
    "image": "image",
    "vnet": "virtual network",
}
# Attributes oned moves from a VM's user template into its template (in vm.xsd's order);
# everything else stays in USER_TEMPLATE.
VM_TEMPLATE_ORDER = [
    "AUTOMATIC_DS_REQUIREMENTS",
    "AUTOMATIC_NIC_REQUIREMENTS",
    "AUTOMATIC_REQUIREMENTS",
    "CLONING_TEMPLATE_ID",
    "CONTEXT",
    "CPU",
    "CPU_COST",
    "DISK",
    "DISK_COST",
    "EMULATOR",
    "FEATURES",
    "HYPERV_OPTIONS",
    "GRAPHICS",
    "IMPORTED",
    "INPUT",
    "MEMORY",
    "MEMORY_COST",
    "MEMORY_MAX",
    "MEMORY_SLOTS",
    "MEMORY_RESIZE_MODE",
    "NIC",
    "NIC_ALIAS",
    "NIC_DEFAULT",
    "NUMA_NODE",
    "OS",
    "PCI",
    "RAW",
    "SPICE_OPTIONS",
    "SUBMIT_ON_HOLD",
    "TEMPLATE_ID",
    "TM_MAD_SYSTEM",
    "TOPOLOGY",
    "VCPU",
    "VCPU_MAX",
    "VMGROUP",
    "VMID",
]
VM_ALLOC = "Error allocating a new virtual machine."
RESTRICTED = {"CONTEXT": {"FILES"}}  # oned.conf's VM_RESTRICTED_ATTR the fake enforces


class OneError(Exception):
    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code, self.message, self.resp_id = code, message, resp_id


@dataclass
class User:
    id: int
    name: str
    password: str
    admin: bool = False

    @property
    def gid(self) -> int:
        return 0 if self.admin else 1

    @property
    def gname(self) -> str:
        return "oneadmin" if self.admin else "users"


@dataclass
class Owned:
    id: int
    name: str
    owner: User
    regtime: int = field(default_factory=lambda: int(time.time()))


@dataclass
class VMTemplate(Owned):
    template: Template = field(default_factory=Template)


@dataclass
class Image(Owned):
    persistent: bool = False
    size_mb: int = 256
    state: int = IMG_READY
    prev_state: int = IMG_READY
    vms: set[int] = field(default_factory=set)
    cloning_ops: int = 0
    cloning_id: int = -1
    clones: set[int] = field(default_factory=set)
    path: str = ""
    template: Template = field(default_factory=Template)
    due: float | None = None  # when the pending LOCKED -> READY or DELETE -> gone happens

    @property
    def source(self) -> str:
        return f"/var/lib/one//datastores/1/{self.id:08x}pcc"


@dataclass
class AddressRange:
    id: int
    type: str  # IP4 or ETHER
    first_ip: int | None
    first_mac: int
    size: int
    attrs: dict[str, str] = field(default_factory=dict)  # GATEWAY, DNS, ... of this range
    leases: dict[int, tuple[str, int]] = field(default_factory=dict)  # index -> ("VM"|"VNET", id)
    parent_ar: int | None = None  # a reservation's range: the parent's range it came from
    parent_offset: int = 0

    def ip(self, index: int) -> str | None:
        return str(ipaddress.IPv4Address(self.first_ip + index)) if self.first_ip is not None else None

    def mac(self, index: int) -> str:
        value = self.first_mac + index
        return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))

    def index_of_ip(self, ip: str) -> int | None:
        if self.first_ip is None:
            return None
        value = int(ipaddress.IPv4Address(ip)) - self.first_ip
        return value if 0 <= value < self.size else None


@dataclass
class VNet(Owned):
    vn_mad: str = "bridge"
    bridge: str = ""
    phydev: str = ""
    vlan_id: str | None = None
    vlan_automatic: bool = False
    parent: int = -1
    state: int = VN_READY
    prev_state: int = VN_READY
    template: Template = field(default_factory=Template)
    ars: list[AddressRange] = field(default_factory=list)
    due: float | None = None

    @property
    def used(self) -> int:
        return sum(len(ar.leases) for ar in self.ars)


@dataclass
class VM(Owned):
    state: int = PENDING
    lcm: int = LCM_INIT
    prev_state: int = INIT
    prev_lcm: int = LCM_INIT
    stime: int = field(default_factory=lambda: int(time.time()))
    etime: int = 0
    deploy_id: str = ""
    template: Template = field(default_factory=Template)  # oned's obj_template
    user_template: Template = field(default_factory=Template)
    history: list[dict[str, int | str]] = field(default_factory=list)
    schedule: list[tuple[float, int, int]] = field(default_factory=list)  # (when, state, lcm)
    leases: list[tuple[int, int, int]] = field(default_factory=list)  # (vnet, ar, index)
    images: list[int] = field(default_factory=list)
    context_cd: dict[str, str] = field(default_factory=dict)  # what FILES put on the context CD
    last_poll: int = 0


def _mac_from_ip(ip: int) -> int:
    return (0x0200 << 32) | ip  # oned's default MAC prefix 02:00 followed by the IPv4 address


class FakeCloud:
    """One OpenNebula zone's worth of objects. Thread-safe: one lock around everything."""

    def __init__(self, step: float = 0.05, version: str = "7.3.80", record: bool = True) -> None:
        self.step, self.version, self.record = step, version, record
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.vms: dict[int, VM] = {}
        self.templates: dict[int, VMTemplate] = {}
        self.images: dict[int, Image] = {}
        self.vnets: dict[int, VNet] = {}
        self._ids = {"user": 0, "vm": 0, "template": 0, "image": 0, "vnet": 0}
        self.vm_quota: dict[int, int] = {}  # user id -> most VMs (not DONE) it may hold
        self.calls: list[str] = []  # every method called, in order
        self.documents: list[tuple[str, str]] = []  # (method, XML) of every document answered
        self.add_user("oneadmin", "oneadmin", admin=True)

    def _next(self, kind: str) -> int:
        value = self._ids[kind]
        self._ids[kind] += 1
        return value

    # -- seeding (what a site's OpenNebula already has) ------------------------------------
    def add_user(self, name: str, password: str, admin: bool = False) -> User:
        with self.lock:
            user = User(self._next("user"), name, password, admin)
            self.users[name] = user
            return user

    def add_template(self, name: str, text: str, owner: str = "oneadmin") -> int:
        with self.lock:
            tid = self._next("template")
            self.templates[tid] = VMTemplate(tid, name, self.users[owner], template=parse(text))
            return tid

    def add_image(
        self, name: str, persistent: bool = False, size_mb: int = 256, owner: str = "oneadmin"
    ) -> int:
        with self.lock:
            iid = self._next("image")
            tmpl = Template([("DEV_PREFIX", "vd"), ("DRIVER", "qcow2")])
            self.images[iid] = Image(
                iid,
                name,
                self.users[owner],
                persistent=persistent,
                size_mb=size_mb,
                path=f"/srv/{name}.qcow2",
                template=tmpl,
            )
            return iid

    def add_vnet(self, text: str, owner: str = "oneadmin") -> int:
        with self.lock:
            vid = self._vnet_from(parse(text), self.users[owner], method="seed")
            self.vnets[vid].state = VN_READY
            self.vnets[vid].due = None
            return vid

    @contextlib.contextmanager
    def vms_limited_to(self, user: str, more: int) -> Iterator[None]:
        """A VM quota for ``user``: ``more`` VMs beyond those it holds now."""
        with self.lock:
            uid = self.users[user].id
            held = sum(1 for vm in self.vms.values() if vm.owner.id == uid and vm.state != DONE)
            self.vm_quota[uid] = held + more
        try:
            yield
        finally:
            with self.lock:
                self.vm_quota.pop(uid, None)

    # -- time ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Apply every transition that is due."""
        now = time.monotonic()
        with self.lock:
            for vm in self.vms.values():
                while vm.schedule and vm.schedule[0][0] <= now:
                    _, state, lcm = vm.schedule.pop(0)
                    self._enter(vm, state, lcm)
            for iid, img in list(self.images.items()):
                if img.due is not None and img.due <= now:
                    img.due = None
                    if img.state == IMG_DELETE:
                        del self.images[iid]
                    elif img.state == IMG_LOCKED:
                        img.state, img.prev_state = IMG_READY, IMG_LOCKED
                        source = self.images.get(img.cloning_id)
                        if source is not None:
                            source.cloning_ops -= 1
                            source.clones.discard(iid)
                        img.cloning_id = -1
            for vid, vnet in list(self.vnets.items()):
                if vnet.due is not None and vnet.due <= now:
                    vnet.due = None
                    if vnet.state == VN_LOCK_DELETE:
                        self._drop_vnet(vid)
                    else:
                        vnet.state, vnet.prev_state = VN_READY, vnet.state

    def _later(self, steps: int) -> float:
        return time.monotonic() + steps * self.step

    def _enter(self, vm: VM, state: int, lcm: int) -> None:
        vm.prev_state, vm.prev_lcm = vm.state, vm.lcm
        vm.state, vm.lcm = state, lcm
        now = int(time.time())
        if (state, lcm) == (ACTIVE, PROLOG):
            vm.history.append(
                {
                    "SEQ": len(vm.history),
                    "HOSTNAME": "fake-host-0",
                    "HID": 0,
                    "CID": 0,
                    "STIME": now,
                    "DS_ID": 0,
                }
            )
            vm.template.replace("TM_MAD_SYSTEM", "ssh")
            for path in _files(vm):
                try:
                    vm.context_cd[Path(path).name] = Path(path).read_text()
                except OSError as exc:
                    vm.schedule.clear()
                    vm.state, vm.lcm = ACTIVE, PROLOG_FAILURE
                    vm.user_template.replace("ERROR", f"Error copying context file {path}: {exc.strerror}")
                    return
        elif (state, lcm) == (ACTIVE, RUNNING):
            vm.deploy_id = f"one-{vm.id}"
            vm.last_poll = now
        elif state == DONE:
            vm.etime = now
            if vm.history:
                vm.history[-1]["ETIME"] = now
            self._release(vm)

    def _release(self, vm: VM) -> None:
        for vnet_id, ar_id, index in vm.leases:
            vnet = self.vnets.get(vnet_id)
            if vnet is not None:
                vnet.ars[ar_id].leases.pop(index, None)
        vm.leases.clear()
        for iid in vm.images:
            img = self.images.get(iid)
            if img is not None:
                img.vms.discard(vm.id)
                if not img.vms and img.state in (IMG_USED, IMG_USED_PERS):
                    img.state, img.prev_state = IMG_READY, img.state
        vm.images.clear()

    # -- authentication --------------------------------------------------------------------
    def authenticate(self, session: str, method: str) -> User:
        name, _, password = session.partition(":")
        user = self.users.get(name)
        if user is None or user.password != password:
            raise OneError(AUTHENTICATION, f"[{method}] User couldn't be authenticated, aborting call.")
        return user

    # -- lookups ---------------------------------------------------------------------------
    def _get(self, kind: str, table: dict[int, object], oid: int, method: str) -> object:
        found = table.get(oid)
        if found is None:
            raise OneError(NO_EXISTS, f"[{method}] Error getting {OBJECT_NAMES[kind]} [{oid}].", oid)
        return found

    def vm(self, oid: int, method: str) -> VM:
        return self._get("vm", self.vms, oid, method)  # type: ignore[return-value]

    def template_(self, oid: int, method: str) -> VMTemplate:
        return self._get("template", self.templates, oid, method)  # type: ignore[return-value]

    def image(self, oid: int, method: str) -> Image:
        return self._get("image", self.images, oid, method)  # type: ignore[return-value]

    def vnet(self, oid: int, method: str) -> VNet:
        return self._get("vnet", self.vnets, oid, method)  # type: ignore[return-value]

    @staticmethod
    def pool_filter(user: User, flag: int, start: int, end: int) -> Callable[[Owned], bool]:
        """Pool info's filter flag (-3 mine, -2 all, -1 mine and my group's, -4 my group's,
        >= 0 that user's) and ID range (-1 -1: all). Permissions beyond ownership are not
        modelled: every user sees every object."""

        def keep(obj: Owned) -> bool:
            if flag == -3 and obj.owner.id != user.id:
                return False
            if flag >= 0 and obj.owner.id != flag:
                return False
            if flag in (-1, -4) and obj.owner.gid != user.gid and obj.owner.id != user.id:
                return False
            if start >= 0 and obj.id < start:
                return False
            return not (end >= 0 and obj.id > end)

        return keep

    # -- templates -------------------------------------------------------------------------
    @staticmethod
    def parse_or_fail(text: str, method: str, code: int = INTERNAL) -> Template:
        try:
            return parse(text)
        except TemplateSyntaxError as exc:
            raise OneError(code, f"[{method}] Parse error: {exc}") from None

    @staticmethod
    def check_restricted(user: User, tmpl: Template, method: str) -> None:
        if user.admin:
            return
        for vector, names in RESTRICTED.items():
            for value in tmpl.vectors(vector):
                for name in names & set(value):
                    raise OneError(
                        AUTHORIZATION,
                        f"[{method}] User [{user.id}] : VM Template includes a restricted attribute "
                        f"{vector}/{name}.",
                    )

    # -- VMs -------------------------------------------------------------------------------
    def create_vm(self, user: User, tmpl: Template, hold: bool, method: str, name: str = "") -> int:
        """oned's VirtualMachine::insert, for what the fake models: size, disks, NICs and
        their leases, CONTEXT, the split into TEMPLATE and USER_TEMPLATE."""
        quota = self.vm_quota.get(user.id)
        if quota is not None:
            held = sum(1 for vm in self.vms.values() if vm.owner.id == user.id and vm.state != DONE)
            if held >= quota:
                raise OneError(
                    AUTHORIZATION,
                    f"[{method}] User [{user.id}] : limit of {quota} reached for VMS quota in user "
                    f"[{user.id}].",
                )
        self.check_restricted(user, tmpl, method)
        user_tmpl = tmpl.copy()
        vid = self._ids["vm"]
        given = user_tmpl.text("NAME") or name
        prefix = user_tmpl.text("TEMPLATE_NAME")
        for attr in ("NAME", "TEMPLATE_NAME", "VMID"):
            user_tmpl.erase(attr)
        obj = Template()
        obj.replace("VMID", str(vid))
        for attr, kind in (("MEMORY", int), ("CPU", float)):
            try:
                value = kind(user_tmpl.text(attr))
            except ValueError:
                value = 0
            if value <= 0:
                raise OneError(
                    ALLOCATE, f"[{method}] Error allocating a new virtual machine. No {attr} in template."
                )
        for attr in VM_TEMPLATE_ORDER:
            if attr in ("DISK", "NIC", "CONTEXT"):
                continue
            for n, v in [(n, v) for n, v in user_tmpl.items if n == attr]:
                obj.items.append((n, v))
            user_tmpl.erase(attr)
        if obj.get("VCPU") is None:
            obj.replace("VCPU", "1")
        disks = user_tmpl.vectors("DISK")
        nics = user_tmpl.vectors("NIC")
        context = user_tmpl.get("CONTEXT")
        for attr in ("DISK", "NIC", "CONTEXT"):
            user_tmpl.erase(attr)
        vm = VM(vid, given or f"{prefix or 'one'}-{vid}", user, template=obj, user_template=user_tmpl)
        try:
            for index, disk in enumerate(disks):
                obj.items.append(("DISK", self._disk(vm, index, disk, method)))
            for index, nic in enumerate(nics):
                obj.items.append(("NIC", self._nic(vm, index, nic, method)))
        except OneError:
            self._release(vm)
            raise
        if isinstance(context, dict):
            obj.items.append(("CONTEXT", self._context(vm, context, len(disks))))
        obj.replace(
            "AUTOMATIC_REQUIREMENTS", "(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)"
        )
        obj.replace("TM_MAD_SYSTEM", "")
        self._ids["vm"] += 1
        self.vms[vid] = vm
        if hold:
            vm.state = HOLD
        else:
            vm.schedule = [
                (self._later(1), ACTIVE, PROLOG),
                (self._later(2), ACTIVE, BOOT),
                (self._later(3), ACTIVE, RUNNING),
            ]
        return vid

    def _disk(self, vm: VM, index: int, disk: dict[str, str], method: str) -> dict[str, str]:
        if "IMAGE_ID" in disk:
            try:
                img = self.images.get(int(disk["IMAGE_ID"]))
            except ValueError:
                img = None
        elif "IMAGE" in disk:
            owner = disk.get("IMAGE_UNAME", vm.owner.name)
            img = next(
                (i for i in self.images.values() if i.name == disk["IMAGE"] and i.owner.name == owner), None
            )
        else:
            raise OneError(
                ALLOCATE,
                f"[{method}] Error allocating a new virtual machine. Volatile disks are not modelled.",
            )
        if img is None:
            raise OneError(
                ALLOCATE, f"[{method}] Error allocating a new virtual machine. Image does not exist."
            )
        if img.state not in (IMG_READY, IMG_USED):
            raise OneError(
                ALLOCATE,
                f"[{method}] {VM_ALLOC} Cannot acquire image {img.id}, it is in state {img.state}.",
            )
        if img.persistent and img.vms:
            raise OneError(
                ALLOCATE,
                f"[{method}] {VM_ALLOC} Cannot acquire image {img.id}, it is persistent and already in use.",
            )
        img.vms.add(vm.id)
        img.prev_state, img.state = img.state, IMG_USED_PERS if img.persistent else IMG_USED
        vm.images.append(img.id)
        out = dict(disk)
        out.update(
            CLONE="NO" if img.persistent else "YES",
            CLONE_TARGET="SYSTEM",
            DATASTORE="default",
            DATASTORE_ID="1",
            DEV_PREFIX=img.template.text("DEV_PREFIX", "vd"),
            DISK_ID=str(index),
            DISK_SNAPSHOT_TOTAL_SIZE="0",
            DISK_TYPE="FILE",
            DRIVER=img.template.text("DRIVER", "qcow2"),
            FORMAT="qcow2",
            IMAGE=img.name,
            IMAGE_ID=str(img.id),
            IMAGE_STATE=str(img.state),
            IMAGE_UID=str(img.owner.id),
            IMAGE_UNAME=img.owner.name,
            LN_TARGET="NONE",
            ORIGINAL_SIZE=str(img.size_mb),
            READONLY="NO",
            SAVE="YES" if img.persistent else "NO",
            SIZE=str(img.size_mb),
            SOURCE=img.source,
            TARGET=f"vd{chr(ord('a') + index)}",
            TM_MAD="ssh",
            TYPE="FILE",
        )
        if img.persistent:
            out["PERSISTENT"] = "YES"
        return dict(sorted(out.items()))

    def _vnet_for(self, user: User, nic: dict[str, str], method: str) -> VNet:
        vnet: VNet | None = None
        if "NETWORK_ID" in nic:
            with contextlib.suppress(ValueError):
                vnet = self.vnets.get(int(nic["NETWORK_ID"]))
        elif "NETWORK" in nic:
            owner = nic.get("NETWORK_UNAME", user.name)
            vnet = next(
                (v for v in self.vnets.values() if v.name == nic["NETWORK"] and v.owner.name == owner), None
            )
        if vnet is None:
            raise OneError(
                ALLOCATE,
                f"[{method}] Error allocating a new virtual machine. Virtual network does not exist.",
            )
        if vnet.state != VN_READY:
            raise OneError(
                ALLOCATE,
                f"[{method}] Error allocating a new virtual machine. Virtual network {vnet.id} is not ready.",
            )
        return vnet

    def _nic(self, vm: VM, index: int, nic: dict[str, str], method: str) -> dict[str, str]:
        vnet = self._vnet_for(vm.owner, nic, method)
        asked = [k for k in ("IP", "IP6", "MAC") if nic.get(k)]
        failed = OneError(
            ALLOCATE,
            f"[{method}] {VM_ALLOC} Cannot get IP/MAC lease from virtual network {vnet.id}.",
        )
        if len(asked) > 1:
            raise failed
        slot = None
        for ar in vnet.ars:
            if asked == ["IP"]:
                i = ar.index_of_ip(nic["IP"])
                if i is not None and i not in ar.leases:
                    slot = (ar, i)
                    break
            elif asked == ["MAC"]:
                i = int(nic["MAC"].replace(":", ""), 16) - ar.first_mac
                if 0 <= i < ar.size and i not in ar.leases:
                    slot = (ar, i)
                    break
            elif not asked:
                free = next((i for i in range(ar.size) if i not in ar.leases), None)
                if free is not None:
                    slot = (ar, free)
                    break
        if slot is None:
            raise failed
        ar, i = slot
        ar.leases[i] = ("VM", vm.id)
        vm.leases.append((vnet.id, ar.id, i))
        out = {k: v for k, v in nic.items() if k not in ("IP", "MAC")}
        out.update(
            AR_ID=str(ar.id),
            BRIDGE=vnet.bridge,
            BRIDGE_TYPE="linux",
            CLUSTER_ID="0",
            MAC=ar.mac(i),
            NAME=f"NIC{index}",
            NETWORK=vnet.name,
            NETWORK_ID=str(vnet.id),
            NETWORK_UNAME=vnet.owner.name,
            NIC_ID=str(index),
            SECURITY_GROUPS="0",
            TARGET=f"one-{vm.id}-{index}",
            VN_MAD=vnet.vn_mad,
        )
        if ar.ip(i) is not None:
            out["IP"] = ar.ip(i) or ""
        if vnet.phydev:
            out["PHYDEV"] = vnet.phydev
        if vnet.vlan_id:
            out["VLAN_ID"] = vnet.vlan_id
        for attr in ("GATEWAY", "DNS"):
            value = ar.attrs.get(attr) or vnet.template.text(attr)
            if value:
                out[attr] = value
        return dict(sorted(out.items()))

    def _context(self, vm: VM, context: dict[str, str], disks: int) -> dict[str, str]:
        """oned's parse_context for the part modelled: the context disk, and with
        NETWORK = "YES" the ETH<i>_* variables of each NIC (``$NETWORK[...]`` and other
        variables in values are not substituted)."""
        out = dict(context)
        out["DISK_ID"] = str(disks)
        out["TARGET"] = "hda"
        if context.get("NETWORK", "").upper() == "YES":
            for nic in vm.template.vectors("NIC"):
                vnet = self.vnets[int(nic["NETWORK_ID"])]
                i = nic["NIC_ID"]
                values = {
                    "IP": nic.get("IP", ""),
                    "MAC": nic["MAC"],
                    "MASK": vnet.template.text("NETWORK_MASK"),
                    "NETWORK": vnet.template.text("NETWORK_ADDRESS"),
                    "GATEWAY": nic.get("GATEWAY", ""),
                    "DNS": nic.get("DNS", ""),
                }
                out.update({f"ETH{i}_{k}": v for k, v in values.items() if v})
        return dict(sorted(out.items()))

    def terminate(self, vm: VM, hard: bool, method: str) -> None:
        if vm.state in (PENDING, HOLD, INIT):
            vm.schedule.clear()
            self._enter(vm, DONE, LCM_INIT)
        elif vm.state == ACTIVE and vm.lcm == RUNNING:
            vm.schedule = []
            self._enter(vm, ACTIVE, SHUTDOWN)
            vm.schedule = [(self._later(1), ACTIVE, EPILOG), (self._later(2), DONE, LCM_INIT)]
        elif hard and vm.state == ACTIVE and vm.lcm in (LCM_INIT, PROLOG, BOOT, PROLOG_FAILURE):
            vm.schedule = []
            self._enter(vm, ACTIVE, CLEANUP_DELETE)
            vm.schedule = [(self._later(1), DONE, LCM_INIT)]
        else:
            raise OneError(
                ACTION,
                f'[{method}] Error performing action "{"terminate-hard" if hard else "terminate"}": '
                f"This action is not available for state {vm.state}/{vm.lcm}",
                vm.id,
            )

    # -- images ----------------------------------------------------------------------------
    def clone_image(self, user: User, source: Image, name: str, method: str) -> int:
        if any(i.name == name and i.owner.id == user.id for i in self.images.values()):
            raise OneError(
                ALLOCATE, f"[{method}] Error allocating a new image. NAME is already taken by IMAGE {name}."
            )
        if source.state not in (IMG_READY, IMG_USED, IMG_USED_PERS):
            raise OneError(ACTION, f"[{method}] Cannot clone image in state {source.state}.", source.id)
        iid = self._next("image")
        img = Image(
            iid,
            name,
            user,
            persistent=False,
            size_mb=source.size_mb,
            state=IMG_LOCKED,
            prev_state=IMG_LOCKED,
            cloning_id=source.id,
            path=source.source,
            template=source.template.copy(),
            due=self._later(1),
        )
        self.images[iid] = img
        source.cloning_ops += 1
        source.clones.add(iid)
        return iid

    def delete_image(self, img: Image, method: str) -> None:
        if img.vms:
            raise OneError(
                ACTION, f"[{method}] Cannot delete image. There are {len(img.vms)} VMs using it.", img.id
            )
        if img.cloning_ops:
            raise OneError(
                ACTION,
                f"[{method}] Cannot delete image. There are {img.cloning_ops} active clone operations.",
                img.id,
            )
        if img.state == IMG_DELETE:
            return
        img.prev_state, img.state, img.due = img.state, IMG_DELETE, self._later(1)

    # -- virtual networks ------------------------------------------------------------------
    def _vnet_from(self, tmpl: Template, user: User, method: str) -> int:
        name = tmpl.text("NAME")
        if not name:
            raise OneError(
                ALLOCATE, f"[{method}] Error allocating a new virtual network. No NAME in template."
            )
        if any(v.name == name and v.owner.id == user.id for v in self.vnets.values()):
            raise OneError(
                ALLOCATE,
                f"[{method}] Error allocating a new virtual network. NAME is already taken by NET {name}.",
            )
        vn_mad = tmpl.text("VN_MAD")
        if not vn_mad:
            raise OneError(
                ALLOCATE, f"[{method}] Error allocating a new virtual network. No VN_MAD in template."
            )
        vid = self._next("vnet")
        auto = tmpl.text("AUTOMATIC_VLAN_ID").upper() == "YES"
        vlan = tmpl.text("VLAN_ID") or (str(100 + vid) if auto else None)
        bridge = tmpl.text("BRIDGE") or (f"onebr.{vlan}" if vlan else f"onebr{vid}")
        body = Template([(n, v) for n, v in tmpl.items if n not in ("NAME", "AR")])
        body.replace("BRIDGE", bridge)
        if body.get("SECURITY_GROUPS") is None:
            body.replace("SECURITY_GROUPS", "0")
        vnet = VNet(
            vid,
            name,
            user,
            vn_mad=vn_mad,
            bridge=bridge,
            phydev=tmpl.text("PHYDEV"),
            vlan_id=vlan,
            vlan_automatic=auto and not tmpl.text("VLAN_ID"),
            template=body,
            state=VN_LOCK_CREATE,
            prev_state=VN_LOCK_CREATE,
            due=self._later(1),
        )
        try:
            for ar in tmpl.vectors("AR"):
                vnet.ars.append(self._address_range(len(vnet.ars), ar, method))
        except (ValueError, KeyError) as exc:
            raise OneError(
                ALLOCATE, f"[{method}] Error allocating a new virtual network. Bad AR: {exc}"
            ) from None
        self.vnets[vid] = vnet
        return vid

    @staticmethod
    def _address_range(index: int, ar: dict[str, str], method: str) -> AddressRange:
        kind = ar.get("TYPE", "").upper()
        size = int(ar["SIZE"])
        if kind not in ("IP4", "ETHER") or size <= 0:
            raise ValueError(f"TYPE {kind!r} SIZE {size} (the fake models IP4 and ETHER ranges)")
        first_ip = int(ipaddress.IPv4Address(ar["IP"])) if kind == "IP4" else None
        if ar.get("MAC"):
            mac = int(ar["MAC"].replace(":", ""), 16)
        else:
            mac = _mac_from_ip(first_ip if first_ip is not None else (index + 1) << 8)
        attrs = {k: v for k, v in ar.items() if k not in ("TYPE", "IP", "MAC", "SIZE")}
        return AddressRange(index, kind, first_ip, mac, size, attrs)

    def reserve(self, user: User, parent: VNet, tmpl: Template, method: str) -> int:
        """oned's VirtualNetworkAPI::reserve for SIZE, NAME, NETWORK_ID, AR_ID and IP."""

        def fail(message: str, code: int = ACTION) -> OneError:
            return OneError(code, f"[{method}] {message}", parent.id)

        try:
            size = int(tmpl.text("SIZE") or 0)
        except ValueError:
            size = 0
        if size <= 0:
            raise fail("Reservation SIZE must be a greater than 0")
        target: VNet | None = None
        if tmpl.get("NETWORK_ID") is not None:
            rid = int(tmpl.text("NETWORK_ID"))
            if rid == parent.id:
                raise fail("Cannot add a reservation from the same network")
            target = self.vnets.get(rid)
            if target is None:
                raise OneError(NO_EXISTS, f"[{method}] Error getting virtual network [{rid}].", rid)
            if target.parent == -1:
                raise fail("Cannot add reservations to a non-reservation VNET")
            if target.parent != parent.id:
                raise fail(
                    f"New reservations for virtual network {rid} have to be from network {target.parent}"
                )
        name = tmpl.text("NAME")
        if not name and target is None:
            raise fail("NAME for reservation has to be set")
        if parent.parent != -1:
            raise fail("Cannot reserve addresses from a reserved VNET")
        ip = tmpl.text("IP")
        ar_text = tmpl.text("AR_ID")
        if ip and not ar_text:
            raise fail("AR_ID must be specified for IP/MAC based reservations")
        ars = (
            [parent.ars[int(ar_text)]]
            if ar_text and int(ar_text) < len(parent.ars)
            else parent.ars
            if not ar_text
            else []
        )
        chosen: tuple[AddressRange, int] | None = None
        for ar in ars:
            start = (
                ar.index_of_ip(ip)
                if ip
                else next(
                    (
                        i
                        for i in range(ar.size - size + 1)
                        if all(j not in ar.leases for j in range(i, i + size))
                    ),
                    None,
                )
            )
            if (
                start is not None
                and start + size <= ar.size
                and all(j not in ar.leases for j in range(start, start + size))
            ):
                chosen = (ar, start)
                break
        if chosen is None:
            raise fail("Not enough free addresses in an address range")
        if target is None:
            body = parent.template.copy()
            rid = self._next("vnet")
            target = VNet(
                rid,
                name,
                user,
                vn_mad=parent.vn_mad,
                bridge=parent.bridge,
                phydev=parent.phydev,
                vlan_id=parent.vlan_id,
                parent=parent.id,
                template=body,
                state=VN_READY,
            )
            self.vnets[rid] = target
        ar, start = chosen
        child = AddressRange(
            len(target.ars),
            ar.type,
            (ar.first_ip + start) if ar.first_ip is not None else None,
            ar.first_mac + start,
            size,
            dict(ar.attrs),
            parent_ar=ar.id,
            parent_offset=start,
        )
        target.ars.append(child)
        for j in range(start, start + size):
            ar.leases[j] = ("VNET", target.id)
        return target.id

    def delete_vnet(self, vnet: VNet, method: str) -> None:
        if vnet.used:
            raise OneError(ACTION, f"[{method}] Can not remove a virtual network with leases in use", vnet.id)
        if vnet.state == VN_LOCK_DELETE:
            return
        vnet.prev_state, vnet.state, vnet.due = vnet.state, VN_LOCK_DELETE, self._later(1)

    def _drop_vnet(self, vid: int) -> None:
        vnet = self.vnets.pop(vid)
        parent = self.vnets.get(vnet.parent)
        if parent is None:
            return
        for ar in vnet.ars:
            if ar.parent_ar is None:
                continue
            for j in range(ar.parent_offset, ar.parent_offset + ar.size):
                parent.ars[ar.parent_ar].leases.pop(j, None)


def _files(vm: VM) -> list[str]:
    ctx = vm.template.get("CONTEXT")
    text = ctx.get("FILES", "") if isinstance(ctx, dict) else ""
    return [p for p in text.split() if p]
