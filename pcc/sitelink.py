"""Talking to a site: the site tool over SSH (paramiko: key auth, known host keys checked,
timeouts), with every argument allow-listed and the command quoted by ``shlex.join``."""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paramiko

from pcc.errors import CapacityError, PermanentError, TemporaryError, UserInputError
from pcc.settings import SiteEntry

log = logging.getLogger(__name__)

# What may appear in a pragma argument sent to a site: names, numbers, key=value options.
SAFE_ARG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=,@+-]{0,200}\Z|^key=-\Z")
VERBS = {("boot",), ("list", "cluster"), ("list", "repository"), ("shutdown",), ("clean",), ("check",)}


@dataclass(frozen=True)
class PragmaResult:
    ok: bool
    result: Any
    error: str
    exit_code: int


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


def run_pragma(
    site: SiteEntry, args: Sequence[str], timeout: float, stdin: str = "", connect_timeout: float = 10.0
) -> PragmaResult:
    """Run the site tool at ``site``; connection problems are :class:`TemporaryError`."""
    command = pragma_command(site, args)
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
    try:
        log.debug("site %s: %s", site.name, command)
        chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
        if stdin:
            chan_in.write(stdin)
        chan_in.channel.shutdown_write()
        out = chan_out.read().decode("utf-8", "replace")
        err = chan_err.read().decode("utf-8", "replace")
        code = chan_out.channel.recv_exit_status()
    except (TimeoutError, OSError, paramiko.SSHException) as exc:
        raise TemporaryError(f"site {site.name}: `{' '.join(args[:2])}` did not finish: {exc}") from None
    finally:
        client.close()
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        tail = err.strip().splitlines()[-1:] or [f"exit code {code}"]
        raise TemporaryError(f"site {site.name}: the site tool printed no JSON ({tail[0]})") from None
    if doc.get("ok"):
        return PragmaResult(True, doc.get("result"), "", code)
    error = doc.get("error", {})
    message = f"site {site.name}: {error.get('message', 'unknown error')}"
    if code == 4:
        raise CapacityError(message)
    return PragmaResult(False, None, message, code)
