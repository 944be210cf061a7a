"""The image repository: ``vcdb.txt`` (``name,relative/path/vc-in.xml`` per line) and one
``vc-in.xml`` per image, in either of the two formats sites have:

* the seed's libvirt-based form, ``<vc type='Local Beowulf'>``, whose ``<frontend>`` and
  ``<compute>`` each hold a libvirt ``<domain>`` with ``type='file'`` or ``type='volume'``
  (pool/volume, as in the ZFS variant) disks;
* pragma_boot's older ``<vc version='0.1'>`` form with ``<virtualization>``, ``<driver>``,
  ``<compute><boot_dependency parent='frontend'><wait .../>`` and ``<networks>``.

XML is parsed with entity resolution, DTD loading and network access off; a malformed or
hostile file is rejected with a message naming the file and the element.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from pcc.common.errors import ConfigError, UserInputError
from pcc.common.names import IMAGE_NAME

MAX_XML_BYTES = 1 << 20


class RepositoryError(ConfigError):
    """A repository file that cannot be used; the message names the file and element."""


@dataclass(frozen=True)
class DiskSource:
    """Where a node's disk comes from in the repository."""

    kind: str  # "file" or "volume"
    format: str  # qemu format of the base ("raw", "qcow2")
    target: str  # guest device
    bus: str
    path: Path | None = None  # kind == "file": absolute path in the repository
    pool: str | None = None  # kind == "volume"
    volume: str | None = None
    host: str | None = None

    def describe(self) -> str:
        return str(self.path) if self.kind == "file" else f"volume {self.pool}/{self.volume}"


@dataclass(frozen=True)
class NodeTemplate:
    """The image's description of one node role."""

    role: str
    domain_xml: str
    vcpus: int
    memory_mib: int
    disks: tuple[DiskSource, ...]
    wait_for: str | None = None  # boot_dependency parent
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class Image:
    name: str
    description: str
    vc_in: Path
    format: str  # "local-beowulf" or "pragma-0.1"
    frontend: NodeTemplate
    compute: NodeTemplate | None
    arch: str = "x86_64"
    public_iface: str | None = None
    private_network: tuple[str, str] | None = None  # (address, netmask) from <networks>
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.vc_in.parent


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
    )


def parse_xml(path: Path) -> etree._Element:
    """Parse a repository XML file safely; DTDs (and so entities) are refused outright."""
    try:
        if path.stat().st_size > MAX_XML_BYTES:
            raise RepositoryError(f"{path}: larger than {MAX_XML_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise RepositoryError(f"{path}: malformed XML: {exc}") from None
    if tree.getroottree().docinfo.internalDTD is not None or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise RepositoryError(f"{path}: <!DOCTYPE>/<!ENTITY> declarations are not allowed")
    return tree


def _int(el: etree._Element | None, path: Path, what: str, default: int) -> int:
    if el is None or el.text is None:
        return default
    try:
        value = int(el.text.strip())
    except ValueError:
        raise RepositoryError(f"{path}: <{what}> is not a number: {el.text.strip()!r}") from None
    if value <= 0:
        raise RepositoryError(f"{path}: <{what}> must be positive")
    return value


def _memory_mib(domain: etree._Element, path: Path) -> int:
    mem = domain.find("memory")
    if mem is None:
        return 512
    value = _int(mem, path, "memory", 512)
    unit = (mem.get("unit") or "KiB").lower()
    factors = {
        "kib": 1 / 1024,
        "k": 1 / 1024,
        "mib": 1,
        "m": 1,
        "gib": 1024,
        "g": 1024,
        "b": 1 / (1 << 20),
        "bytes": 1 / (1 << 20),
    }
    if unit not in factors:
        raise RepositoryError(f"{path}: <memory unit='{unit}'> is not a known unit")
    return max(1, int(value * factors[unit]))


def _disks(domain: etree._Element, path: Path, role: str) -> tuple[DiskSource, ...]:
    disks: list[DiskSource] = []
    for disk in domain.iterfind("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue  # cdroms and floppies of the original image are not staged
        kind = disk.get("type")
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else None) or "raw"
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        bus = (target.get("bus") if target is not None else None) or "virtio"
        source = disk.find("source")
        where = f"{path}: <{role}><domain><devices><disk type='{kind}'>"
        if source is None:
            raise RepositoryError(f"{where} has no <source>")
        if fmt not in ("raw", "qcow2"):
            raise RepositoryError(f"{where}: disk format {fmt!r} is not supported (raw, qcow2)")
        if kind == "file":
            rel = source.get("file")
            if not rel:
                raise RepositoryError(f"{where}: <source> has no file attribute")
            full = (path.parent / rel).resolve() if not os.path.isabs(rel) else Path(rel)
            disks.append(DiskSource("file", fmt, dev or "", bus, path=full))
        elif kind == "volume":
            pool, volume = source.get("pool"), source.get("volume")
            if not pool or not volume:
                raise RepositoryError(f"{where}: <source> needs pool and volume attributes")
            disks.append(
                DiskSource(
                    "volume",
                    fmt,
                    dev or "",
                    bus,
                    pool=pool,
                    volume=volume,
                    host=(source.find("host").get("name") if source.find("host") is not None else None),
                )
            )
        else:
            raise RepositoryError(f"{path}: <{role}> disk type {kind!r} is not supported (file, volume)")
    if not disks:
        raise RepositoryError(f"{path}: <{role}><domain> has no disk")
    # Targets: keep the image's names, fill in missing ones in order.
    names = iter(f"vd{chr(ord('a') + i)}" for i in range(26))
    return tuple(d if d.target else DiskSource(**{**d.__dict__, "target": next(names)}) for d in disks)


def _node(section: etree._Element, path: Path, role: str) -> NodeTemplate:
    domain = section.find("domain")
    if domain is None:
        raise RepositoryError(f"{path}: <{role}> has no <domain>")
    wait_for, wait_seconds = None, 0.0
    dep = section.find("boot_dependency")
    if dep is not None:
        wait_for = dep.get("parent") or "frontend"
        if wait_for != "frontend":
            raise RepositoryError(
                f"{path}: <boot_dependency parent='{wait_for}'>: only 'frontend' is supported"
            )
        wait = dep.find("wait")
        if wait is not None and wait.get("type", "clock") == "clock":
            try:
                wait_seconds = float(wait.get("value", "0"))
            except ValueError:
                raise RepositoryError(f"{path}: <boot_dependency><wait value=...> is not a number") from None
    return NodeTemplate(
        role=role,
        domain_xml=etree.tostring(domain, encoding="unicode"),
        vcpus=_int(domain.find("vcpu"), path, "vcpu", 1),
        memory_mib=_memory_mib(domain, path),
        disks=_disks(domain, path, role),
        wait_for=wait_for,
        wait_seconds=wait_seconds,
    )


def parse_vc_in(path: Path, name: str) -> Image:
    root = parse_xml(path)
    if root.tag != "vc":
        raise RepositoryError(f"{path}: root element is <{root.tag}>, expected <vc>")
    description = (root.findtext("description") or "").strip()
    fe = root.find("frontend")
    if fe is None:
        raise RepositoryError(f"{path}: <vc> has no <frontend>")
    compute_el = root.find("compute")
    frontend = _node(fe, path, "frontend")
    compute = _node(compute_el, path, "compute") if compute_el is not None else None
    if root.get("type") == "Local Beowulf":
        return Image(name, description, path, "local-beowulf", frontend, compute)
    if root.get("version") == "0.1":
        virt = root.find("virtualization")
        arch = virt.get("arch", "x86_64") if virt is not None else "x86_64"
        public_iface = root.findtext("networks/frontend/public")
        private = root.find("networks/network[@name='private']")
        private_net = None
        if private is not None:
            private_net = (
                (private.findtext("ipaddress") or "").strip(),
                (private.findtext("netmask") or "").strip(),
            )
        extra = {"driver": (root.findtext("driver") or "").strip()}
        if compute is not None and compute.wait_for is None:
            compute = NodeTemplate(**{**compute.__dict__, "wait_for": "frontend"})
        return Image(
            name,
            description,
            path,
            "pragma-0.1",
            frontend,
            compute,
            arch=arch,
            public_iface=public_iface.strip() if public_iface else None,
            private_network=private_net,
            extra=extra,
        )
    raise RepositoryError(f"{path}: <vc> is neither type='Local Beowulf' nor version='0.1'")


@dataclass(frozen=True)
class Repository:
    root: Path

    @property
    def index(self) -> Path:
        return self.root / "vcdb.txt"

    def entries(self) -> dict[str, Path]:
        """Image names to their vc-in.xml, from vcdb.txt (comments and blank lines allowed)."""
        try:
            lines = self.index.read_text().splitlines()
        except OSError as exc:
            raise RepositoryError(f"{self.index}: cannot read the repository index: {exc.strerror}") from None
        out: dict[str, Path] = {}
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, rel = (part.strip() for part in line.partition(","))
            if not sep or not IMAGE_NAME.match(name) or not rel:
                raise RepositoryError(f"{self.index}:{number}: expected 'name,relative/path/vc-in.xml'")
            target = (self.root / rel).resolve()
            if not target.is_relative_to(self.root.resolve()):
                raise RepositoryError(f"{self.index}:{number}: {rel!r} points outside the repository")
            out[name] = target
        return out

    def image(self, name: str) -> Image:
        entries = self.entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UserInputError(f"unknown image {name!r} (this site has: {known})")
        return parse_vc_in(entries[name], name)

    def images(self) -> list[Image]:
        return [parse_vc_in(path, name) for name, path in sorted(self.entries().items())]
