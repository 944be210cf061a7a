"""Talking to a site: the site tool over SSH (paramiko: key auth, known host keys checked,
timeouts), every argument allow-listed and the command quoted by ``shlex.join``. The
answers are the typed documents of :mod:`pcc.common.protocol`; a failed command raises
the exception its error document names (``CapacityError``, ``UserInputError``, ...)."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pcc.common import protocol
from pcc.common.errors import PermanentError, TemporaryError, UserInputError
from pcc.common.protocol import ActionResult, BootResult, CheckReport, ClusterStatus, ImageInfo, NodeInfo

if TYPE_CHECKING:
    from pcc.controller.settings import SiteEntry

log = logging.getLogger(__name__)

# What may appear in a pragma argument sent to a site: names, numbers, key=value options.
SAFE_ARG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=,@+-]{0,200}\Z|^key=-\Z")


class Connection(Protocol):
    """A kept login that runs many commands (:class:`pcc.controller.openssh.SharedConnection`)."""

    def run(self, command: str, timeout: float, stdin: str = "") -> str: ...


VERBS = {("boot",), ("list", "cluster"), ("list", "repository"), ("shutdown",), ("clean",), ("check",)}


def pragma_command(site: SiteEntry, args: Sequence[str]) -> str:
    """The remote command line, after allow-list validation of every argument."""
    if not any(tuple(args[: len(v)]) == v for v in VERBS):
        raise UserInputError(f"not a site-tool command: {' '.join(args[:2])!r}")
    for arg in args:
        if not SAFE_ARG.match(arg):
            raise UserInputError(f"refusing to send {arg!r} to site {site.name}")
    argv = [site.pragma, "--json"]
    if site.pragma_config:
        argv += ["--config", site.pragma_config]
    return shlex.join([*argv, *args])


def _connect(site: SiteEntry, connect_timeout: float) -> Any:
    """A logged-in paramiko client for ``site``. Connection trouble is a TemporaryError, a
    host key that does not match (or is unknown) a PermanentError."""
    import paramiko

    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(site.known_hosts))
    except OSError as exc:
        raise PermanentError(f"site {site.name}: cannot read known hosts {site.known_hosts}: {exc}") from None
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            site.host,
            port=site.port,
            username=site.user,
            key_filename=str(site.key),
            timeout=connect_timeout,
            banner_timeout=connect_timeout,
            auth_timeout=connect_timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()  # a started transport must not leave its thread and socket behind
        raise PermanentError(f"site {site.name}: host key mismatch for {site.host}: {exc}") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise PermanentError(f"site {site.name}: unknown host key for {site.host}") from None
        raise TemporaryError(f"site {site.name}: SSH to {site.host}:{site.port} failed: {exc}") from None
    except (TimeoutError, OSError) as exc:
        client.close()
        raise TemporaryError(f"site {site.name}: cannot reach {site.host}:{site.port}: {exc}") from None
    return client


def _exec(client: Any, site: SiteEntry, command: str, timeout: float, stdin: str) -> str:
    """Run ``command`` over a logged-in client (a new channel, not a new login); its stdout."""
    import paramiko

    try:
        log.debug("site %s: %s", site.name, command)
        chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
        if stdin:
            chan_in.write(stdin)
        chan_in.channel.shutdown_write()
        out = chan_out.read().decode("utf-8", "replace")
        err = chan_err.read().decode("utf-8", "replace")
        code = chan_out.channel.recv_exit_status()
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
        raise TemporaryError(f"site {site.name}: `{command.split()[2:4]}` did not finish: {exc}") from None
    if not out.strip():
        tail = err.strip().splitlines()[-1:] or [f"exit code {code}"]
        raise TemporaryError(f"site {site.name}: the site tool printed no JSON ({tail[0]})")
    return out


def run_ssh(site: SiteEntry, command: str, timeout: float, stdin: str, connect_timeout: float) -> str:
    """Run ``command`` at the site on a connection of its own; its stdout."""
    client = _connect(site, connect_timeout)
    try:
        return _exec(client, site, command, timeout, stdin)
    finally:
        client.close()


class SiteClient:
    """The site tool's verbs at one site, typed. ``timeout`` bounds each call (connection
    included); ``boot_timeout`` bounds a boot."""

    def __init__(
        self,
        site: SiteEntry,
        timeout: float = 20.0,
        boot_timeout: float = 600.0,
        connection: Connection | None = None,
    ) -> None:
        self.site, self.timeout, self.boot_timeout = site, timeout, boot_timeout
        self.connection = connection  # None: a connection per call

    def _call(self, args: Sequence[str], stdin: str = "", timeout: float | None = None) -> Any:
        command = pragma_command(self.site, args)
        if self.connection is not None:
            out = self.connection.run(command, timeout or self.timeout, stdin)
        else:
            out = run_ssh(self.site, command, timeout or self.timeout, stdin, self.timeout)
        try:
            envelope = protocol.parse_envelope(out)
        except protocol.ProtocolError as exc:
            raise protocol.ProtocolError(f"site {self.site.name}: {exc}") from None
        if envelope.error is not None:
            raise envelope.error.exception(f"site {self.site.name}: ")
        return envelope.result

    def _parse(self, what: str, parse: Any, doc: Any) -> Any:
        try:
            return parse(doc)
        except (protocol.ProtocolError, TypeError, ValueError, KeyError) as exc:
            raise protocol.ProtocolError(f"site {self.site.name}: {what}: {exc}") from None

    def boot(
        self, image: str, compute_cpus: int, cluster: str, key: str, enable_ent: bool = False
    ) -> BootResult:
        """`pragma boot IMAGE NCPUS key=- cluster=NAME`; the key goes on stdin (job ads are public)."""
        args = ["boot", image, str(compute_cpus), "key=-", f"cluster={cluster}"]
        if enable_ent:
            args.append("enable-ent=true")
        doc = self._call(args, stdin=key, timeout=self.boot_timeout)
        return self._parse("boot result", BootResult.from_doc, doc)

    def clusters(self) -> dict[str, ClusterStatus]:
        """Every cluster the site runs, by name (one call for all of them)."""
        doc = self._call(["list", "cluster"])
        nodes = self._parse("cluster list", lambda d: [NodeInfo.from_doc(n) for n in d], doc or [])
        return ClusterStatus.group(nodes)

    def cluster(self, name: str) -> ClusterStatus:
        """One cluster (no nodes when the site has none of that name)."""
        doc = self._call(["list", "cluster", name])
        nodes = self._parse("cluster list", lambda d: [NodeInfo.from_doc(n) for n in d], doc or [])
        return ClusterStatus(name, tuple(n for n in nodes if n.cluster == name))

    def shutdown(self, name: str) -> ActionResult:
        return self._parse(
            "shutdown", ActionResult.from_doc, self._call(["shutdown", name], timeout=self.boot_timeout)
        )

    def clean(self, name: str) -> ActionResult:
        return self._parse(
            "clean", ActionResult.from_doc, self._call(["clean", name], timeout=self.boot_timeout)
        )

    def check(self) -> CheckReport:
        return self._parse("check report", CheckReport.from_doc, self._call(["check"]))

    def images(self) -> list[ImageInfo]:
        doc = self._call(["list", "repository"])
        return self._parse("image list", lambda d: [ImageInfo.from_doc(i) for i in d], doc or [])
