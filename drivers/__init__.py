"""VM-provisioner drivers used by the site tool `pragma`: one module per back-end behind
:class:`pcc.drivers.base.Driver`, registered by name and imported only when asked for, so
optional back-ends (libvirt-python, boto3, pyone) stay optional."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pcc.drivers.base import Driver

REGISTRY: dict[str, str] = {
    "libvirt": "pcc.drivers.libvirt:LibvirtDriver",
}


class UnknownDriver(LookupError):
    pass


def load_driver(name: str, settings: Mapping[str, Any]) -> Driver:
    """Instantiate the driver registered as ``name`` with its settings."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownDriver(f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownDriver(f"driver {name!r} cannot be loaded: {exc}") from exc
    cls = getattr(module, class_name)
    return cls(settings)
