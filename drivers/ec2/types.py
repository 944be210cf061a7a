"""Instance types: the site's table of what it may launch (``[[driver.ec2.instance_types]]``,
else :data:`DEFAULT_INSTANCE_TYPES`), and the choice of the smallest type that fits a node."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pcc.common.errors import UnsupportedError

# EC2's instance type names: family (letters, digits, '-') '.' size, e.g. t3.nano, m7i-flex.large.
TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


@dataclass(frozen=True, order=True)
class InstanceType:
    """One launchable type and its size as EC2 describes it (vCPUs, memory in MiB)."""

    vcpus: int
    memory_mib: int
    name: str


# AWS's general-purpose t3 and m5 families (sizes as DescribeInstanceTypes reports them),
# for sites that give no table of their own.
DEFAULT_INSTANCE_TYPES: tuple[InstanceType, ...] = (
    InstanceType(2, 512, "t3.nano"),
    InstanceType(2, 1024, "t3.micro"),
    InstanceType(2, 2048, "t3.small"),
    InstanceType(2, 4096, "t3.medium"),
    InstanceType(2, 8192, "t3.large"),
    InstanceType(4, 16384, "t3.xlarge"),
    InstanceType(8, 32768, "t3.2xlarge"),
    InstanceType(16, 65536, "m5.4xlarge"),
    InstanceType(32, 131072, "m5.8xlarge"),
    InstanceType(48, 196608, "m5.12xlarge"),
    InstanceType(64, 262144, "m5.16xlarge"),
    InstanceType(96, 393216, "m5.24xlarge"),
)


def choose_instance_type(types: Sequence[InstanceType], vcpus: int, memory_mib: int) -> InstanceType:
    """The smallest type with at least ``vcpus`` and ``memory_mib``: fewest vCPUs first, then
    least memory, then name (so the choice does not depend on the table's order).

    Raises
    ------
    UnsupportedError
        No type in the table is that large.
    """
    fitting = sorted(t for t in types if t.vcpus >= vcpus and t.memory_mib >= memory_mib)
    if not fitting:
        largest = ", ".join(f"{t.name} ({t.vcpus} vCPUs, {t.memory_mib} MiB)" for t in largest_types(types))
        raise UnsupportedError(
            f"no instance type at this site has {vcpus} vCPUs and {memory_mib} MiB "
            f"(largest: {largest or 'none'})"
        )
    return fitting[0]


def largest_types(types: Iterable[InstanceType]) -> list[InstanceType]:
    """The types with the most vCPUs and with the most memory (one or two entries)."""
    listed = list(types)
    if not listed:
        return []
    by_cpu = max(listed, key=lambda t: (t.vcpus, t.memory_mib))
    by_mem = max(listed, key=lambda t: (t.memory_mib, t.vcpus))
    return [by_cpu] if by_cpu == by_mem else [by_cpu, by_mem]
