"""``[driver.ec2]``: where the EC2 (or EC2-compatible) API is, how to sign requests, which
VPC clusters get their subnets in, and the tables of instance types and images.

Secrets are never in the file: ``secret_access_key_file`` names a file that is read when
the driver connects, and nothing here prints it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pcc.common.errors import ConfigError
from pcc.common.names import IMAGE_NAME
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import DriverSettings
from pcc.drivers.ec2.types import DEFAULT_INSTANCE_TYPES, TYPE_NAME, InstanceType

REGION = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9+/=_-]{3,128}$")
PROFILE = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
# An AMI is named either by its id or by its name (EC2 allows 3-128 of these characters).
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
AMI_NAME = re.compile(r"^[A-Za-z0-9()\[\]./\-'@_ ]{3,128}$")
OWNER = re.compile(r"^(self|amazon|aws-marketplace|[0-9]{12})$")


@dataclass(frozen=True)
class Ec2Settings(DriverSettings):
    """``[driver.ec2]``: see the module docstring of :mod:`pcc.drivers.ec2.driver`."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key_file: Path | None = None
    vpc_id: str | None = None  # None: the region's default VPC
    subnet_pool: str | None = None  # where cluster subnets are carved; None: the VPC's CIDR
    subnet_prefix: int | None = None  # None: the prefix of the site's [network] private_cidr
    availability_zone: str | None = None
    ssh_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    image_owners: tuple[str, ...] = ("self",)
    images: dict[str, str] = field(default_factory=dict)  # repository image -> AMI id or name
    instance_types: tuple[InstanceType, ...] = DEFAULT_INSTANCE_TYPES
    clean_timeout_s: float = 600.0
    poll_interval_s: float = 2.0

    def secret_access_key(self) -> str | None:
        """The secret, read from its file now (never kept in the settings)."""
        if self.secret_access_key_file is None:
            return None
        try:
            text = self.secret_access_key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"[driver.ec2] secret_access_key_file {self.secret_access_key_file}: cannot read: "
                f"{exc.strerror}"
            ) from None
        if not text or len(text.splitlines()) != 1:
            raise ConfigError(
                f"[driver.ec2] secret_access_key_file {self.secret_access_key_file}: expected one line"
            )
        return text

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        region = reader.get("region", str, "us-east-1")
        if not REGION.match(region):
            raise reader.fail("region", f"not a region name: {region!r}")
        endpoint = reader.get("endpoint_url", str, "") or None
        if endpoint is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", endpoint):
            raise reader.fail("endpoint_url", f"expected an http:// or https:// URL, got {endpoint!r}")
        profile = reader.get("profile", str, "") or None
        if profile is not None and not PROFILE.match(profile):
            raise reader.fail("profile", f"not a profile name: {profile!r}")
        key_id = reader.get("access_key_id", str, "") or None
        secret_file = (
            reader.directory("secret_access_key_file") if "secret_access_key_file" in reader.data else None
        )
        if key_id is not None and not ACCESS_KEY_ID.match(key_id):
            raise reader.fail("access_key_id", "not an access key id")
        if (key_id is None) != (secret_file is None):
            raise reader.fail(
                "access_key_id" if key_id is None else "secret_access_key_file",
                "access_key_id and secret_access_key_file go together",
            )
        if profile is not None and key_id is not None:
            raise reader.fail("profile", "give a profile or access_key_id, not both")
        vpc = reader.get("vpc_id", str, "") or None
        if vpc is not None and not VPC_ID.match(vpc):
            raise reader.fail("vpc_id", f"not a VPC id: {vpc!r}")
        pool = reader.get("subnet_pool", str, "") or None
        if pool is not None:
            try:
                pool = str(ipaddress.IPv4Network(pool))
            except ValueError:
                raise reader.fail("subnet_pool", f"not an IPv4 network: {pool!r}") from None
        prefix = reader.get("subnet_prefix", int, 0) or None
        if prefix is not None and not 16 <= prefix <= 28:
            raise reader.fail("subnet_prefix", f"EC2 subnets are /16 to /28, got /{prefix}")
        zone = reader.get("availability_zone", str, "") or None
        if zone is not None and not REGION.match(zone):
            raise reader.fail("availability_zone", f"not a zone name: {zone!r}")
        return cls(
            region=region,
            endpoint_url=endpoint,
            profile=profile,
            access_key_id=key_id,
            secret_access_key_file=secret_file,
            vpc_id=vpc,
            subnet_pool=pool,
            subnet_prefix=prefix,
            availability_zone=zone,
            ssh_cidrs=_cidrs(reader, "ssh_cidrs"),
            image_owners=_owners(reader),
            images=_images(reader),
            instance_types=_instance_types(reader),
            clean_timeout_s=_seconds(reader, "clean_timeout_s", 600.0),
            poll_interval_s=_seconds(reader, "poll_interval_s", 2.0),
        )


def _seconds(reader: TomlReader, key: str, default: float) -> float:
    value = reader.get(key, float, default)
    if value <= 0:
        raise reader.fail(key, f"must be > 0, got {value}")
    return value


def _cidrs(reader: TomlReader, key: str) -> tuple[str, ...]:
    values = reader.get(key, list, ["0.0.0.0/0"])
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.IPv4Network(value)))
        except (ValueError, TypeError):
            raise reader.fail(key, f"not an IPv4 network: {value!r}") from None
    return tuple(out)


def _owners(reader: TomlReader) -> tuple[str, ...]:
    values = reader.get("image_owners", list, ["self"])
    for value in values:
        if not isinstance(value, str) or not OWNER.match(value):
            raise reader.fail(
                "image_owners", f"expected self, amazon, aws-marketplace or an account id: {value!r}"
            )
    if not values:
        raise reader.fail("image_owners", "must name at least one owner")
    return tuple(values)


def ami_reference(value: Any) -> str | None:
    """``value`` if it names an AMI (by id or by name), else None."""
    if isinstance(value, str) and (AMI_ID.match(value) or AMI_NAME.match(value)):
        return value
    return None


def _images(reader: TomlReader) -> dict[str, str]:
    table = reader.sub("images", required=False)
    if table is None:
        return {}
    out = {}
    for name, value in table.data.items():
        if not IMAGE_NAME.match(name):
            raise table.fail(name, "not an image name")
        ref = ami_reference(value)
        if ref is None:
            raise table.fail(name, f"expected an AMI id (ami-...) or AMI name, got {value!r}")
        out[name] = ref
    return out


def _instance_types(reader: TomlReader) -> tuple[InstanceType, ...]:
    if "instance_types" not in reader.data:
        return DEFAULT_INSTANCE_TYPES
    items = reader.get("instance_types", list)
    if not items:
        raise reader.fail("instance_types", "must list at least one instance type")
    out: dict[str, InstanceType] = {}
    for i, item in enumerate(items):
        sub = TomlReader(
            reader.path, item if isinstance(item, dict) else {}, f"{reader.table}.instance_types[{i}]"
        )
        if not isinstance(item, dict):
            raise reader.fail("instance_types", f"entry {i} is not a table")
        for key in item:
            if key not in ("name", "vcpus", "memory_mib"):
                raise sub.fail(key, "unknown setting (known: memory_mib, name, vcpus)")
        name = sub.get("name", str)
        if not TYPE_NAME.match(name):
            raise sub.fail("name", f"not an instance type name: {name!r}")
        if name in out:
            raise sub.fail("name", f"{name} is listed twice")
        out[name] = InstanceType(sub.positive("vcpus"), sub.positive("memory_mib"), name)
    return tuple(out.values())
