"""``[driver.opennebula]``: where OpenNebula is, who the site is there, and what of it the
driver uses. See the package docstring for every key."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pcc.common.errors import ConfigError
from pcc.common.names import IMAGE_NAME, NETWORK_NAME
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import DriverSettings
from pcc.drivers.opennebula.syntax import NAME, TemplateValueError, quote

PRIVATE_MODES = ("create", "reserve")
ROLES = ("frontend", "compute")
# Attributes of the per-cluster network the driver writes itself; the table may not set them.
OWN_VNET_ATTRIBUTES = frozenset({"NAME", "AR", "NETWORK_ADDRESS", "NETWORK_MASK", "PCC_CLUSTER"})
_SOURCE = re.compile(r"^(?P<kind>template|image):(?P<ref>\S(?:.*\S)?)\Z")


@dataclass(frozen=True)
class Source:
    """Where a node's disk comes from in OpenNebula: a VM template to instantiate, or an
    image to attach (by name, or by numeric ID)."""

    kind: str  # "template" or "image"
    ref: str

    @classmethod
    def parse(cls, text: str, where: str) -> Source:
        match = _SOURCE.match(text)
        if not match:
            raise ConfigError(f"{where}: expected 'template:NAME' or 'image:NAME' (or an ID), got {text!r}")
        return cls(match["kind"], match["ref"])

    def describe(self) -> str:
        return f"{self.kind} {self.ref}"


@dataclass(frozen=True)
class OpenNebulaSettings(DriverSettings):
    endpoint: str = ""
    user: str = ""
    password_file: Path = Path()
    public_network: str = ""
    private_mode: str = "create"
    private_vnet: Mapping[str, str] = field(default_factory=dict)
    reserve_from: str = ""
    vnet_cluster_id: int = -1
    ent_networks: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, Mapping[str, Source]] = field(default_factory=dict)
    clone_datastore_id: int = -1
    files_dir: Path | None = None
    request_timeout_s: float = 60.0
    poll_interval_s: float = 2.0
    cleanup_timeout_s: float = 300.0

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        endpoint = reader.get("endpoint", str)
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise reader.fail(
                "endpoint", f"expected an http(s) XML-RPC URL such as http://one:2633/RPC2, got {endpoint!r}"
            )
        user = reader.get("user", str)
        if not user or ":" in user or any(c.isspace() for c in user):
            raise reader.fail("user", f"not an OpenNebula user name: {user!r}")
        mode = reader.get("private_mode", str, "create")
        if mode not in PRIVATE_MODES:
            raise reader.fail("private_mode", f"must be 'create' or 'reserve', got {mode!r}")
        reserve_from = reader.get("reserve_from", str, "")
        if mode == "reserve" and not reserve_from:
            raise reader.fail("reserve_from", "private_mode 'reserve' needs the network to reserve from")
        if mode == "create" and reserve_from:
            raise reader.fail("reserve_from", "only used with private_mode = 'reserve'")
        vnet = _vnet_attributes(reader, mode)
        ent: dict[str, str] = {}
        for name, vnet_name in reader.get("ent_networks", dict, {}).items():
            if not NETWORK_NAME.match(name) or not isinstance(vnet_name, str) or not vnet_name.strip():
                raise reader.fail("ent_networks", f'expected ENT name = "OpenNebula network", got {name!r}')
            ent[name] = vnet_name.strip()
        timeouts = {
            key: _seconds(reader, key, default)
            for key, default in (
                ("request_timeout_s", 60.0),
                ("poll_interval_s", 2.0),
                ("cleanup_timeout_s", 300.0),
            )
        }
        files_dir = reader.directory("files_dir") if "files_dir" in reader.data else None
        public = reader.get("public_network", str).strip()
        if not public:
            raise reader.fail(
                "public_network", "missing (the OpenNebula network frontends' public NIC is on)"
            )
        return cls(
            endpoint=endpoint,
            user=user,
            password_file=_file(reader, "password_file"),
            public_network=public,
            private_mode=mode,
            private_vnet=vnet,
            reserve_from=reserve_from.strip(),
            vnet_cluster_id=reader.get("vnet_cluster_id", int, -1),
            ent_networks=ent,
            images=_images(reader),
            clone_datastore_id=reader.get("clone_datastore_id", int, -1),
            files_dir=files_dir,
            **timeouts,
        )


def _file(reader: TomlReader, key: str) -> Path:
    value = Path(reader.get(key, str)).expanduser()
    return value if value.is_absolute() else (reader.path.parent / value).resolve()


def _seconds(reader: TomlReader, key: str, default: float) -> float:
    value = reader.get(key, float, default)
    if not math.isfinite(value) or value <= 0:
        raise reader.fail(key, f"must be a positive number of seconds, got {value}")
    return value


def _vnet_attributes(reader: TomlReader, mode: str) -> dict[str, str]:
    raw = reader.get("private_vnet", dict, {})
    if mode == "reserve":
        if raw:
            raise reader.fail("private_vnet", "only used with private_mode = 'create'")
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not NAME.match(key) or key in OWN_VNET_ATTRIBUTES:
            raise reader.fail("private_vnet", f"{key!r} is not an attribute this table may set")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise reader.fail("private_vnet", f"{key}: expected a string or a number, got {value!r}")
        try:
            quote(str(value))
        except TemplateValueError as exc:
            raise reader.fail("private_vnet", f"{key}: {exc}") from None
        out[key] = str(value)
    if "VN_MAD" not in out:
        raise reader.fail("private_vnet", 'needs VN_MAD (e.g. "vxlan", "802.1Q" or "bridge")')
    return out


def _images(reader: TomlReader) -> dict[str, dict[str, Source]]:
    table = reader.sub("images", required=False)
    if table is None:
        return {}
    out: dict[str, dict[str, Source]] = {}
    for image, roles in table.data.items():
        if not IMAGE_NAME.match(image) or not isinstance(roles, dict):
            raise table.fail(image, 'expected a table: frontend = "template:NAME", compute = "image:NAME"')
        sub = TomlReader(table.path, roles, f"{table.table}.{image}")
        for role in roles:
            if role not in ROLES:
                raise sub.fail(role, "unknown role (frontend, compute)")
        out[image] = {role: Source.parse(sub.get(role, str), sub.where(role)) for role in roles}
    return out


def settings_summary(settings: OpenNebulaSettings) -> dict[str, Any]:
    """What ``check`` may show (never the password or its file's content)."""
    return {
        "endpoint": settings.endpoint,
        "user": settings.user,
        "public_network": settings.public_network,
        "private_mode": settings.private_mode,
        **({"reserve_from": settings.reserve_from} if settings.reserve_from else {}),
        "ent_networks": dict(settings.ent_networks),
    }
