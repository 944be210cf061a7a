"""The controller's configuration: one TOML file, ``pcc.toml``, validated at load.

Found at ``--config PATH``, else ``$PCC_CONFIG``, else ``<state dir>/pcc.toml``; a missing
default file means embedded defaults (a personal pool, no sites). The state directory is
``state_dir`` in the file, else ``--state-dir``/``$PCC_STATE_DIR``, else the ``.state``
directory beside the virtualenv the program runs from (a checkout's), else ``/var/lib/pcc``
for root and ``~/.local/state/pcc`` otherwise; messages that depend on it say which it is
and why. ``$PCC_CONDOR_CONFIG`` and
``$PCC_POLL_SECONDS`` and ``$PCC_API_LISTEN`` override the file (handy for one-off runs).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pcc.common.errors import ConfigError, UserInputError
from pcc.common.names import CLUSTER_NAME
from pcc.common.tomlcfg import TomlReader, read_toml

if TYPE_CHECKING:  # imported where used: every short job reads its settings, few need these
    from pcc.booked.config import BookedConfig
    from pcc.condor.pool import PersonalPool


def default_state_dir(env: dict[str, str] | None = None, prefix: str | None = None) -> tuple[Path, str]:
    """The state directory and why it was chosen: ``$PCC_STATE_DIR``; else the ``.state``
    directory beside the virtualenv this program runs from (a checkout's own, as `make`
    creates it); else ``/var/lib/pcc`` for root, ``~/.local/state/pcc`` for others."""
    env = dict(os.environ if env is None else env)
    if value := env.get("PCC_STATE_DIR"):
        return Path(value).expanduser().resolve(), "from $PCC_STATE_DIR"
    venv = Path(prefix or sys.prefix)
    beside = venv.parent / ".state"
    if venv != Path(sys.base_prefix) and beside.is_dir():
        return beside.resolve(), f"the checkout's, beside the virtualenv {venv}"
    if os.geteuid() == 0:
        return Path("/var/lib/pcc"), "the default for root (no $PCC_STATE_DIR, no checkout state)"
    return Path.home() / ".local" / "state" / "pcc", "the default for a user (no $PCC_STATE_DIR)"


# Where boot jobs run (see submit_templates/boot.sub): "local" (the default: the schedd's
# host, through a condor_starter, no slot), "scheduler" (the schedd's host, started by the
# schedd itself: no starter) or "vanilla" (an execute host's slot).
BOOT_UNIVERSES = ("local", "scheduler", "vanilla")


@dataclass(frozen=True)
class SiteEntry:
    """A site as the controller reaches it: over SSH, running the site tool."""

    name: str
    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    cpus: int
    memory_gb: float
    deployment_type: str = ""
    ent: bool = False
    pragma: str = "pragma"  # the site tool's command at the site
    pragma_config: str = ""  # passed as --config when set


@dataclass(frozen=True)
class Timings:
    boot_lead_s: float = 60.0  # boot jobs start this long before a reservation begins
    reconcile_s: float = 5.0  # reconcile loop period
    watch_poll_s: float = 10.0  # how often a site's monitor job asks its site for all its clusters
    boot_retries: int = 3  # DAGMan RETRY of boot nodes
    retry_delay_s: float = 5.0  # a failed boot attempt waits this long before exiting
    ssh_timeout_s: float = 20.0
    boot_timeout_s: float = 600.0  # one `pragma boot` call
    orphan_check_s: float = 60.0  # how often the loop asks sites for clusters no reservation owns
    probe_s: float = 30.0  # how often every site's health is probed (`pragma check`)


@dataclass(frozen=True)
class NotifyConfig:
    """Where notices go: SMTP (users' email addresses) and/or a webhook; both off by default."""

    smtp_host: str = ""
    smtp_port: int = 25
    sender: str = "pcc@localhost"
    webhook: str = ""
    ending_minutes: float = 15.0
    timeout_s: float = 5.0


@dataclass(frozen=True)
class ApiConfig:
    """`pcc serve`'s REST API and web page: ``[api] listen = "HOST:PORT"`` (port 0: any free
    one; ``listen = ""`` turns both off) and how long a web login lasts."""

    host: str = "127.0.0.1"
    port: int = 8080
    enabled: bool = True
    session_s: float = 12 * 3600.0

    @classmethod
    def parse(cls, listen: str, where: str, session_s: float = 12 * 3600.0) -> ApiConfig:
        if not listen:
            return cls(enabled=False, session_s=session_s)
        host, sep, port = listen.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"{where}: expected HOST:PORT (e.g. 127.0.0.1:8080), got {listen!r}")
        if not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", host):
            raise ConfigError(f"{where}: not a host name or address: {host!r}")
        return cls(host, int(port), True, session_s)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """What every command needs to know before it does anything."""

    state_dir: Path
    # An existing pool's CONDOR_CONFIG; None means the embedded personal pool.
    external_condor_config: Path | None = None
    poll_seconds: float = 5.0
    timings: Timings = field(default_factory=Timings)
    sites: tuple[SiteEntry, ...] = ()
    config_file: Path | None = None
    metrics_port: int = 9464  # /metrics on 127.0.0.1; 0 turns it off
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    booked: BookedConfig | None = None  # the LibreBooking connector; None: off
    # Where boot jobs run: one of BOOT_UNIVERSES.
    boot_universe: str = "local"
    state_dir_reason: str = "from the configuration's state_dir"

    @classmethod
    def from_env(cls, state_dir: Path | None = None, config: Path | None = None) -> Settings:
        """Load ``pcc.toml`` (see module doc) and apply environment overrides."""
        if state_dir is not None:
            state, why = state_dir.resolve(), "from --state-dir"
        else:
            state, why = default_state_dir()
        explicit = config or (Path(os.environ["PCC_CONFIG"]) if os.environ.get("PCC_CONFIG") else None)
        path = explicit or state / "pcc.toml"
        settings = cls._load(path, state) if explicit or path.exists() else cls(state_dir=state)
        if settings.state_dir == state:
            settings = dataclasses.replace(settings, state_dir_reason=why)
        return settings._with_env()

    @classmethod
    def _load(cls, path: Path, state: Path) -> Settings:
        top = TomlReader(path, read_toml(path, "controller configuration"))
        if "state_dir" in top.data:
            state = top.directory("state_dir")
        condor = top.sub("condor", required=False)
        external = None
        if condor is not None and "config" in condor.data:
            external = condor.directory("config")
        boot_universe = condor.get("boot_universe", str, "local") if condor is not None else "local"
        if boot_universe not in BOOT_UNIVERSES:
            assert condor is not None
            choices = ", ".join(BOOT_UNIVERSES)
            raise condor.fail("boot_universe", f"expected one of {choices}, got {boot_universe!r}")
        timings_reader = top.sub("timings", required=False) or TomlReader(path, {}, "timings")
        defaults = Timings()
        values = {}
        for name in Timings.__dataclass_fields__:
            default = getattr(defaults, name)
            kind = int if isinstance(default, int) else float
            value = timings_reader.get(name, kind, default)
            if value < 0 or (value == 0 and name not in ("boot_lead_s", "retry_delay_s")):
                raise timings_reader.fail(name, f"must be > 0, got {value}")
            values[name] = value
        sites = []
        for i, raw in enumerate(top.get("sites", list, [])):
            reader = TomlReader(path, raw if isinstance(raw, dict) else {}, f"sites[{i}]")
            sites.append(_site(reader))
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            raise top.fail("sites", f"site names must be unique, got {names}")
        notify_reader = top.sub("notify", required=False)
        notify = NotifyConfig()
        if notify_reader is not None:
            webhook = notify_reader.get("webhook", str, "")
            if webhook and not webhook.startswith(("http://", "https://")):
                raise notify_reader.fail("webhook", f"not an http(s) URL: {webhook!r}")
            notify = NotifyConfig(
                smtp_host=notify_reader.get("smtp_host", str, ""),
                smtp_port=notify_reader.get("smtp_port", int, 25),
                sender=notify_reader.get("from", str, "pcc@localhost"),
                webhook=webhook,
                ending_minutes=notify_reader.get("ending_minutes", float, 15.0),
                timeout_s=notify_reader.get("timeout_s", float, 5.0),
            )
        api = ApiConfig()
        api_reader = top.sub("api", required=False)
        if api_reader is not None:
            session_s = api_reader.get("session_hours", float, 12.0) * 3600
            if session_s <= 0:
                raise api_reader.fail("session_hours", "must be > 0")
            api = ApiConfig.parse(
                api_reader.get("listen", str, "127.0.0.1:8080"), f"{path}: [api] listen", session_s
            )
        booked_reader = top.sub("booked", required=False)
        booked = None
        if booked_reader is not None:
            from pcc.booked.config import BookedConfig

            booked = BookedConfig.parse(booked_reader)
        metrics = top.sub("metrics", required=False)
        metrics_port = metrics.get("port", int, 9464) if metrics is not None else 9464
        return cls(
            booked=booked,
            api=api,
            notify=notify,
            metrics_port=metrics_port,
            state_dir=state,
            external_condor_config=external,
            poll_seconds=values["reconcile_s"],
            timings=Timings(**values),
            sites=tuple(sites),
            config_file=path,
            boot_universe=boot_universe,
        )

    def _with_env(self) -> Settings:
        external = self.external_condor_config
        if env := os.environ.get("PCC_CONDOR_CONFIG"):
            external = Path(env).expanduser().resolve()
        if external is not None and not external.is_file():
            raise ConfigError(f"PCC_CONDOR_CONFIG / [condor] config: no such file: {external}")
        poll = self.poll_seconds
        if env := os.environ.get("PCC_POLL_SECONDS"):
            try:
                poll = float(env)
            except ValueError:
                raise ConfigError(f"PCC_POLL_SECONDS: not a number: {env!r}") from None
            if poll <= 0:
                raise ConfigError(f"PCC_POLL_SECONDS: must be > 0, got {env!r}")
        api = self.api
        if (env := os.environ.get("PCC_API_LISTEN")) is not None:
            api = ApiConfig.parse(env, "PCC_API_LISTEN", api.session_s)
        return dataclasses.replace(self, external_condor_config=external, poll_seconds=poll, api=api)

    @property
    def embedded(self) -> bool:
        return self.external_condor_config is None

    def embedded_pool(self) -> PersonalPool:
        from pcc.condor.pool import PersonalPool

        return PersonalPool(
            prefix=self.state_dir / "condor" / "prefix", local_dir=self.state_dir / "condor" / "local"
        )

    @property
    def download_cache(self) -> Path:
        return self.state_dir / "cache"

    @property
    def database(self) -> Path:
        return self.state_dir / "pcc.db"

    def where(self) -> str:
        """Which state directory this is and why, for messages that must say so."""
        return f"state directory {self.state_dir} ({self.state_dir_reason})"

    @property
    def dag_dir(self) -> Path:
        return self.state_dir / "dags"

    @property
    def controller_id(self) -> str:
        """What tells this controller's jobs from another's in a shared pool (their
        ``PccController``): its state directory, which holds its store."""
        return str(self.state_dir)

    def site(self, name: str, error: type[UserInputError] = UserInputError) -> SiteEntry:
        """The configured site ``name``; else ``error`` naming the sites there are."""
        for site in self.sites:
            if site.name == name:
                return site
        known = ", ".join(s.name for s in self.sites) or "none configured"
        raise error(f"unknown site {name!r} (sites: {known})")


def _site(reader: TomlReader) -> SiteEntry:
    name = reader.get("name", str)
    if not CLUSTER_NAME.match(name):
        raise reader.fail("name", f"invalid site name {name!r} (lower-case letters, digits, '-')")
    port = reader.get("port", int, 22)
    if not 0 < port < 65536:
        raise reader.fail("port", f"not a port: {port}")
    memory = reader.get("memory_gb", float)
    if memory <= 0:
        raise reader.fail("memory_gb", f"must be > 0, got {memory}")
    user = reader.get("user", str)
    if not CLUSTER_NAME.match(user.replace("_", "-")):
        raise reader.fail("user", f"invalid user name {user!r}")
    return SiteEntry(
        name=name,
        host=reader.get("host", str),
        port=port,
        user=user,
        key=reader.directory("key"),
        known_hosts=reader.directory("known_hosts"),
        cpus=reader.positive("cpus"),
        memory_gb=memory,
        deployment_type=reader.get("deployment_type", str, ""),
        ent=reader.get("ent", bool, False),
        pragma=reader.get("pragma", str, "pragma"),
        pragma_config=reader.get("pragma_config", str, ""),
    )
