"""The EC2 back-end of `pragma` (Amazon EC2 or any EC2-compatible cloud, through boto3):
:class:`Ec2Driver` and its settings :class:`Ec2Settings`; see :mod:`.driver` for what a
cluster is made of there and how images and instance types are chosen.

Both are imported on first use, so that the package's pure parts load without boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcc.drivers.ec2.driver import Ec2Driver
    from pcc.drivers.ec2.settings import Ec2Settings

__all__ = ["Ec2Driver", "Ec2Settings"]


def __getattr__(name: str) -> Any:
    if name == "Ec2Driver":
        from pcc.drivers.ec2 import driver

        return driver.Ec2Driver
    if name == "Ec2Settings":
        from pcc.drivers.ec2 import settings

        return settings.Ec2Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
