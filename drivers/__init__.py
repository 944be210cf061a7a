"""VM-provisioner drivers used by the site tool `pragma`, behind :class:`pcc.drivers.base.Driver`.

Built-in drivers are registered by name in :data:`BUILTIN` and imported only when a site
asks for them, so optional back-ends (libvirt-python, boto3, pyone) stay optional. Other
packages add drivers without editing PCC through the entry-point group ``pcc.drivers``::

    [project.entry-points."pcc.drivers"]
    mycloud = "mycloud_pcc:MyCloudDriver"
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata

from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import Driver, SiteContext

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pcc.drivers"

BUILTIN: dict[str, str] = {
    "libvirt": "pcc.drivers.libvirt:LibvirtDriver",
    "ec2": "pcc.drivers.ec2:Ec2Driver",
    "rocks": "pcc.drivers.rocks:RocksDriver",
    "opennebula": "pcc.drivers.opennebula:OpenNebulaDriver",
    "simulated": "pcc.drivers.simulated:SimulatedDriver",
}


class UnknownDriver(LookupError):
    """No driver of that name, or it cannot be imported; the message lists the known ones."""


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            log.warning("driver %r from entry point %s ignored: a built-in has that name", ep.name, ep.value)
            continue
        found.setdefault(ep.name, ep)
    return found


def known() -> dict[str, str]:
    """Every driver name this installation can load, to where it is found."""
    return {**{name: ep.value for name, ep in _entry_points().items()}, **BUILTIN}


def driver_class(name: str) -> type[Driver]:
    """The class registered as ``name`` (built-in first, then entry points), imported now."""
    if name in BUILTIN:
        module_name, _, class_name = BUILTIN[name].partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise UnknownDriver(f"driver {name!r} cannot be loaded: {exc}") from exc
    else:
        eps = _entry_points()
        if name not in eps:
            raise UnknownDriver(f"unknown driver {name!r}; known: {', '.join(sorted(known()))}")
        try:
            cls = eps[name].load()
        except Exception as exc:  # a third-party package may fail in any way while importing
            raise UnknownDriver(
                f"driver {name!r} (entry point {eps[name].value}) cannot be loaded: {exc}"
            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise UnknownDriver(f"driver {name!r} is {cls!r}, not a subclass of pcc.drivers.base.Driver")
    return cls


def load_driver(name: str, reader: TomlReader, site: SiteContext) -> Driver:
    """The driver registered as ``name``, configured from its ``[driver.<name>]`` table.

    Raises
    ------
    UnknownDriver
        No such driver, or it cannot be imported.
    pcc.common.errors.ConfigError
        Its settings are invalid (the message names ``file: [driver.<name>] key``).
    """
    return driver_class(name).from_toml(reader, site)
