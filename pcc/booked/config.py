"""``[booked]`` in pcc.toml: which LibreBooking (or Booked Scheduler) PCC serves as a
calendar, with which service account, how often it looks, and what its attributes are
called there (PRAGMA's names by default, so an existing Booked set-up keeps its own).

    [booked]
    url = "https://booked.example.org"         # LibreBooking's base URL
    user = "pcc"                                # an admin account PCC acts as
    password_file = "/etc/pcc/booked.password"  # or: password = "..."
    poll_seconds = 30
    lookahead_days = 14                         # bookings further ahead wait
    sites_by = "name"                           # or "attribute": the resource attribute "PCC site"

    [booked.attributes]                         # only the names that differ
    vc_name = "VC Name"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from pcc.common.errors import ConfigError
from pcc.common.tomlcfg import TomlReader

SERVICES_PATH = "/Web/Services/index.php"


@dataclass(frozen=True)
class AttributeNames:
    """The custom attributes' labels in LibreBooking, by their role in PCC."""

    # reservation attributes: what a booking asks for, and what PCC says back
    cpus: str = "CPUs"
    memory: str = "Memory (GB)"
    ent: str = "ENT-enabled"
    vc_name: str = "VC Name"
    status: str = "Status"
    # user attribute
    ssh_key: str = "SSH public key"
    # resource attributes: what a site is, and its live figures
    pcc_site: str = "PCC site"
    pragma_version: str = "Pragma_boot version"
    temp_dir: str = "Temporary directory"
    username: str = "Username"
    available_cpus: str = "Available CPUs"
    available_memory: str = "Available Gb Memory"
    deployment_type: str = "Deployment type"
    site_ent: str = "ENT-enabled"
    hostname: str = "Site hostname"
    health: str = "Site status"


@dataclass(frozen=True)
class BookedConfig:
    url: str  # the base URL (LibreBooking's root)
    user: str
    password_text: str = field(default="", repr=False)  # never printed, never logged
    password_file: Path | None = None  # read when used: jobs that load pcc.toml never need it
    poll_s: float = 30.0
    lookahead_s: float = 14 * 86_400.0
    sites_by: str = "name"  # "name" | "attribute"
    timeout_s: float = 10.0
    attributes: AttributeNames = field(default_factory=AttributeNames)

    def password(self) -> str:
        """The service account's password (from the file, read now)."""
        if self.password_file is None:
            return self.password_text
        try:
            password = self.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"[booked] password_file: cannot read {self.password_file}: {exc.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"[booked] password_file: {self.password_file} is empty")
        return password

    @property
    def services_url(self) -> str:
        """The web-services API's base (``.../Web/Services/index.php``)."""
        return self.url if self.url.endswith(SERVICES_PATH) else self.url.rstrip("/") + SERVICES_PATH

    @classmethod
    def parse(cls, reader: TomlReader) -> BookedConfig:
        url = reader.get("url", str)
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise reader.fail("url", f"not an http(s) URL: {url!r}")
        user = reader.get("user", str)
        if not user or len(user) > 85 or any(ord(c) < 33 for c in user):
            raise reader.fail("user", "a LibreBooking user name (no spaces)")
        password, password_file = _password(reader)
        poll = reader.get("poll_seconds", float, 30.0)
        if poll <= 0:
            raise reader.fail("poll_seconds", f"must be > 0, got {poll}")
        ahead = reader.get("lookahead_days", float, 14.0)
        if not 0 < ahead <= 366:
            raise reader.fail("lookahead_days", f"must be more than 0 and at most 366, got {ahead}")
        timeout = reader.get("timeout_s", float, 10.0)
        if timeout <= 0:
            raise reader.fail("timeout_s", f"must be > 0, got {timeout}")
        sites_by = reader.get("sites_by", str, "name")
        if sites_by not in ("name", "attribute"):
            raise reader.fail("sites_by", f'"name" or "attribute", not {sites_by!r}')
        names = reader.sub("attributes", required=False)
        attributes = AttributeNames()
        if names is not None:
            known = {f.name for f in fields(AttributeNames)}
            unknown = sorted(set(names.data) - known)
            if unknown:
                raise names.fail(unknown[0], f"unknown attribute role (known: {', '.join(sorted(known))})")
            values = {}
            for key in names.data:
                label = names.get(key, str).strip()
                if not label or len(label) > 85:
                    raise names.fail(key, "a label of 1 to 85 characters")
                values[key] = label
            attributes = AttributeNames(**values)
            check_unique_labels(attributes, names.where("*"))
        return cls(
            url.rstrip("/"),
            user,
            password,
            password_file,
            poll,
            ahead * 86_400,
            sites_by,
            timeout,
            attributes,
        )


def _password(reader: TomlReader) -> tuple[str, Path | None]:
    """The inline password, or the file that holds it (read when used, not here: the jobs
    HTCondor runs as the pool's user load pcc.toml too, and must not need the secret)."""
    has_inline, has_file = "password" in reader.data, "password_file" in reader.data
    if has_inline == has_file:
        raise reader.fail("password", "give the service account's password or password_file (one of them)")
    if has_inline:
        password = reader.get("password", str)
        if not password:
            raise reader.fail("password", "the service account's password is empty")
        return password, None
    path = Path(reader.get("password_file", str)).expanduser()
    return "", path if path.is_absolute() else reader.path.parent / path


def describe(config: BookedConfig) -> str:
    """For logs and messages: where and as whom (never the password)."""
    return f"LibreBooking at {config.url} as {config.user}"


def check_unique_labels(names: AttributeNames, where: str) -> None:
    """Two roles of one category may not share a label (PCC could not tell them apart)."""
    reservation = [names.cpus, names.memory, names.ent, names.vc_name, names.status]
    resource = [
        names.pcc_site,
        names.pragma_version,
        names.temp_dir,
        names.username,
        names.available_cpus,
        names.available_memory,
        names.deployment_type,
        names.site_ent,
        names.hostname,
        names.health,
    ]
    for group in (reservation, resource):
        seen = {label.casefold() for label in group}
        if len(seen) != len(group):
            raise ConfigError(f"{where}: two roles of one kind share a label in {group}")
