"""The libvirt back-end of `pragma`: :class:`LibvirtDriver` and the modules it is made of
(domain XML, qcow2 overlays, NoCloud seeds, the loopback hub, ports, NIC attachments).

``LibvirtDriver`` is imported on first use, so that ``python -m pcc.drivers.libvirt.hub``
starts without loading libvirt-python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcc.drivers.libvirt.driver import LibvirtDriver, LibvirtSettings

__all__ = ["LibvirtDriver", "LibvirtSettings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pcc.drivers.libvirt import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
