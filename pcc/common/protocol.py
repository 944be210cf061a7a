"""The site protocol: the documents `pragma --json` prints and the controller reads, as
typed values both ends share. One envelope per command::

    {"ok": true,  "protocol": 1, "command": "list cluster", "result": ...}
    {"ok": false, "protocol": 1, "command": "boot", "error": {"type": ..., "message": ..., "exit_code": N}}

Each value has ``to_doc()`` (what the site prints) and ``from_doc()`` (what the controller
parses, validating as it goes: a site is input like any other). Pure: no I/O here.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcc.common import errors
from pcc.common.jobstate import PccState

PROTOCOL_VERSION = 1
MAX_DOCUMENT_BYTES = 16 << 20  # a listing of thousands of clusters fits many times over


class ProtocolError(errors.TemporaryError):
    """A site answered something that is not a valid protocol document."""


class NodeState(enum.StrEnum):
    """A node's state, whatever the back-end: each driver maps its own states onto these."""

    PENDING = "pending"
    BOOTING = "booting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> NodeState:
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


class Role(enum.StrEnum):
    FRONTEND = "frontend"
    COMPUTE = "compute"


# Node states that hold site capacity.
ACTIVE = frozenset({NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING})


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(doc, Mapping):
        raise ProtocolError(f"{what}: expected an object, got {type(doc).__name__}")
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        raise ProtocolError(f"{what}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _opt(doc: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    return None if doc.get(key) is None else _get(doc, key, kind, what)


def _address(doc: Mapping[str, Any], key: str) -> str | None:
    """An IP address or None: these end up in login commands users copy, so nothing else."""
    value = _opt(doc, key, str, "node")
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ProtocolError(f"node: {key} is not an IP address: {value[:60]!r}") from None


def _port(doc: Mapping[str, Any]) -> int | None:
    value = _opt(doc, "ssh_port", int, "node")
    if value is not None and not 0 < value < 65536:
        raise ProtocolError(f"node: ssh_port out of range: {value}")
    return value


@dataclass(frozen=True)
class NodeInfo:
    """A node as the back-end reports it now (never from the site tool's own notes).
    ``extra`` holds back-end details for logs and local use; it is not sent."""

    cluster: str
    name: str
    role: Role
    state: NodeState
    vcpus: int
    memory_mib: int
    private_ip: str | None = None
    public_ip: str | None = None
    ssh_port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_doc(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "role": self.role.value,
            "state": self.state.value,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "ssh_port": self.ssh_port,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NodeInfo:
        what = "node"
        role = _get(doc, "role", str, what)
        if role not in {r.value for r in Role}:
            raise ProtocolError(f"node: unknown role {role!r}")
        return cls(
            cluster=str(_get(doc, "cluster", str, what)),
            name=str(_get(doc, "name", str, what)),
            role=Role(role),
            state=NodeState.parse(doc.get("state")),
            vcpus=int(_get(doc, "vcpus", int, what)),
            memory_mib=int(_get(doc, "memory_mib", int, what)),
            private_ip=_address(doc, "private_ip"),
            public_ip=_address(doc, "public_ip"),
            ssh_port=_port(doc),
        )


@dataclass(frozen=True)
class ClusterStatus:
    """One cluster's nodes, and what they add up to."""

    cluster: str
    nodes: tuple[NodeInfo, ...]

    @property
    def nodes_up(self) -> int:
        return sum(1 for n in self.nodes if n.state is NodeState.RUNNING)

    @property
    def nodes_total(self) -> int:
        return len(self.nodes)

    @property
    def frontend(self) -> NodeInfo | None:
        return next((n for n in self.nodes if n.role is Role.FRONTEND), None)

    @property
    def login_address(self) -> str:
        """``host`` or ``host:port`` of the frontend's SSH (port shown when not 22)."""
        fe = self.frontend
        if fe is None or not fe.public_ip:
            return ""
        return fe.public_ip if fe.ssh_port in (None, 22) else f"{fe.public_ip}:{fe.ssh_port}"

    def verdict(self) -> tuple[PccState, str]:
        """The state a job publishes for this cluster, with its message."""
        if not self.nodes:
            return PccState.LOST, "the site reports no nodes for this cluster"
        counts = f"{self.nodes_up}/{self.nodes_total} nodes running"
        return (PccState.RUNNING if self.nodes_up == self.nodes_total else PccState.DEGRADED), counts

    @classmethod
    def group(cls, nodes: Sequence[NodeInfo]) -> dict[str, ClusterStatus]:
        """Nodes of many clusters (``pragma list cluster``) by cluster name."""
        by: dict[str, list[NodeInfo]] = {}
        for node in nodes:
            by.setdefault(node.cluster, []).append(node)
        return {name: cls(name, tuple(members)) for name, members in by.items()}


@dataclass(frozen=True)
class BootResult:
    cluster: str
    message: str
    nodes: tuple[NodeInfo, ...]
    staging_seconds: float | None = None
    boot_seconds: float | None = None

    @property
    def status(self) -> ClusterStatus:
        return ClusterStatus(self.cluster, self.nodes)

    def to_doc(self) -> dict[str, Any]:
        fe = self.status.frontend
        doc: dict[str, Any] = {
            "cluster": self.cluster,
            "message": self.message,
            "frontend": fe.name if fe else None,
            "public_ip": fe.public_ip if fe else None,
            "ssh_port": fe.ssh_port if fe else None,
            "nodes": [n.to_doc() for n in self.nodes],
        }
        if self.staging_seconds is not None:
            doc["staging_seconds"] = round(self.staging_seconds, 3)
        if self.boot_seconds is not None:
            doc["boot_seconds"] = round(self.boot_seconds, 3)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> BootResult:
        nodes = _get(doc, "nodes", list, "boot result")
        return cls(
            cluster=str(_get(doc, "cluster", str, "boot result")),
            message=str(doc.get("message") or "booted"),
            nodes=tuple(NodeInfo.from_doc(n) for n in nodes),
            staging_seconds=_opt(doc, "staging_seconds", (int, float), "boot result"),  # type: ignore[arg-type]
            boot_seconds=_opt(doc, "boot_seconds", (int, float), "boot result"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ActionResult:
    """What `shutdown` and `clean` did (both idempotent: "nothing to clean" is success)."""

    cluster: str
    message: str
    counts: Mapping[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"cluster": self.cluster, **dict(self.counts), "message": self.message}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ActionResult:
        cluster = _get(doc, "cluster", str, "result")
        counts = {k: v for k, v in doc.items() if k not in ("cluster", "message")}
        return cls(cluster, str(doc.get("message") or ""), counts)


@dataclass(frozen=True)
class ImageInfo:
    """One image of a site's repository; ``roles`` has the frontend's and computes' sizes."""

    name: str
    description: str = ""
    format: str = ""
    roles: Mapping[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "format": self.format, **self.roles}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ImageInfo:
        roles = {k: doc[k] for k in ("frontend", "compute") if isinstance(doc.get(k), Mapping)}
        return cls(
            str(_get(doc, "name", str, "image")),
            str(doc.get("description") or ""),
            str(doc.get("format") or ""),
            roles,
        )


@dataclass(frozen=True)
class Capacity:
    total: int
    reserved: int
    used: int
    free: int

    def to_doc(self) -> dict[str, int]:
        return {"total": self.total, "reserved": self.reserved, "used": self.used, "free": self.free}

    @classmethod
    def from_doc(cls, doc: Any, what: str) -> Capacity:
        if not isinstance(doc, Mapping):
            raise ProtocolError(f"check report: {what} must be an object")
        return cls(*(int(_get(doc, k, (int, float), what)) for k in ("total", "reserved", "used", "free")))


@dataclass(frozen=True)
class CheckReport:
    """`pragma check`: is the site usable, what does it have, what is free."""

    ok: bool
    problems: tuple[str, ...]
    site: str
    pragma_version: str
    deployment_type: str
    ent_enabled: bool
    driver: Mapping[str, Any]
    repository_path: str
    images: tuple[str, ...] | None  # None: the repository could not be read
    cpus: Capacity
    memory_mb: Capacity
    network_mode: str = ""
    staging_path: str = ""  # the site's temporary directory for staged images ("" if unsaid)

    def to_doc(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "site": self.site,
            "pragma_version": self.pragma_version,
            "deployment_type": self.deployment_type,
            "ent_enabled": self.ent_enabled,
            "driver": dict(self.driver),
            "repository": {
                "path": self.repository_path,
                "readable": self.images is not None,
                "images": list(self.images or ()),
            },
            "cpus": self.cpus.to_doc(),
            "memory_mb": self.memory_mb.to_doc(),
            "network_mode": self.network_mode,
            "staging": {"path": self.staging_path},
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CheckReport:
        what = "check report"
        repo = doc.get("repository") if isinstance(doc, Mapping) else None
        if not isinstance(repo, Mapping):
            raise ProtocolError(f"{what}: 'repository' must be an object")
        images = repo.get("images")
        readable = repo.get("readable", True)
        problems = _get(doc, "problems", list, what)
        driver = doc.get("driver") or {}
        return cls(
            ok=bool(_get(doc, "ok", bool, what)),
            problems=tuple(str(p) for p in problems),
            site=str(doc.get("site") or ""),
            pragma_version=str(doc.get("pragma_version") or ""),
            deployment_type=str(doc.get("deployment_type") or ""),
            ent_enabled=bool(doc.get("ent_enabled", False)),
            driver=dict(driver) if isinstance(driver, Mapping) else {},
            repository_path=str(repo.get("path") or ""),
            images=tuple(str(i) for i in images) if isinstance(images, list) and readable else None,
            cpus=Capacity.from_doc(doc.get("cpus"), "cpus"),
            memory_mb=Capacity.from_doc(doc.get("memory_mb"), "memory_mb"),
            network_mode=str(doc.get("network_mode") or ""),
            staging_path=_staging_path(doc.get("staging")),
        )


def _staging_path(doc: Any) -> str:
    """The staging directory a check report names; older site tools say none."""
    path = doc.get("path") if isinstance(doc, Mapping) else None
    if not isinstance(path, str) or len(path) > 4096 or any(ord(c) < 32 for c in path):
        return ""
    return path


@dataclass(frozen=True)
class ErrorDoc:
    """A failed command: the exception's type name, its message, the exit code."""

    type: str
    message: str
    exit_code: int

    def to_doc(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "exit_code": self.exit_code}

    @classmethod
    def from_doc(cls, doc: Any) -> ErrorDoc:
        if not isinstance(doc, Mapping):
            raise ProtocolError("error document: expected an object")
        code = doc.get("exit_code")
        return cls(
            str(doc.get("type") or "PccError"),
            str(doc.get("message") or "unknown error"),
            code if isinstance(code, int) and not isinstance(code, bool) else 1,
        )

    def exception(self, prefix: str = "") -> errors.PccError:
        """The exception this document names (unknown names become a plain PccError)."""
        cls = ERROR_TYPES.get(self.type, errors.PccError)
        return cls(f"{prefix}{self.message}")


# The error types a site may name, and the exception each becomes at the controller.
ERROR_TYPES: dict[str, type[errors.PccError]] = {
    cls.__name__: cls
    for cls in (
        errors.PccError,
        errors.ConfigError,
        errors.UserInputError,
        errors.CapacityError,
        errors.DriverError,
        errors.TemporaryError,
        errors.PermanentError,
        errors.UnsupportedError,
    )
}
ERROR_TYPES["RepositoryError"] = errors.ConfigError
ERROR_TYPES["OSError"] = errors.DriverError


def success(command: str, result: Any) -> dict[str, Any]:
    return {"ok": True, "protocol": PROTOCOL_VERSION, "command": command, "result": result}


def failure(command: str, error: ErrorDoc) -> dict[str, Any]:
    return {"ok": False, "protocol": PROTOCOL_VERSION, "command": command, "error": error.to_doc()}


@dataclass(frozen=True)
class Envelope:
    ok: bool
    command: str
    result: Any = None
    error: ErrorDoc | None = None


def parse_envelope(text: str) -> Envelope:
    """The one JSON document a `pragma --json` run printed (logs go to stderr)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ProtocolError(f"the site tool printed more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"the site tool printed no JSON ({exc.msg})") from None
    except (ValueError, RecursionError, TypeError) as exc:  # huge numbers, deep nesting
        raise ProtocolError(
            f"the site tool printed JSON that cannot be read ({type(exc).__name__})"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
        raise ProtocolError("the site tool printed JSON that is not a protocol document")
    command = str(doc.get("command") or "")
    if doc["ok"]:
        return Envelope(True, command, doc.get("result"))
    return Envelope(False, command, error=ErrorDoc.from_doc(doc.get("error")))
