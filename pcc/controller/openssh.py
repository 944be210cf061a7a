"""One SSH login to a site kept for many commands, through OpenSSH's own connection sharing
(a ``ssh -M`` master on a control socket; each command is a ``ssh -S`` client that opens a
channel on it, not a new login). A long-running job such as a site's monitor uses it: the
OpenSSH client is a small C program, so the job need not load paramiko and its crypto
(measured: ~22 MB of private memory per process), and sites see one login per monitor.

Same checks as :func:`pcc.controller.siteclient.run_ssh`: key login only (``BatchMode``),
host key checked against the site's known hosts and refused when unknown or changed, the
remote command already quoted by the caller. After a failed login the next attempt waits
``reconnect_s``, so a site sees at most 60 / ``reconnect_s`` logins a minute from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pcc.common.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    from pcc.controller.settings import SiteEntry

log = logging.getLogger(__name__)

SSH = "ssh"
CONNECTION_LOST = 255  # what ssh exits with when the connection (not the command) failed


def ssh_options(site: SiteEntry, connect_timeout: float) -> list[str]:
    return [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={site.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
        "-o", "ServerAliveInterval=30",
        "-o", "ServerAliveCountMax=3",
        "-o", "LogLevel=ERROR",
        "-F", "/dev/null",
        "-i", str(site.key),
        "-p", str(site.port),
        "-l", site.user,
    ]  # fmt: skip


class SharedConnection:
    """A kept OpenSSH master connection to ``site`` and the commands run over it."""

    def __init__(self, site: SiteEntry, connect_timeout: float, reconnect_s: float = 30.0) -> None:
        self.site, self.connect_timeout, self.reconnect_s = site, connect_timeout, reconnect_s
        self.logins = 0  # login attempts (master starts), for the monitor's own ad
        # A Unix socket's path is short (108 bytes, and ssh adds a suffix while it makes
        # one): not under $TMPDIR, which HTCondor points into the job's scratch directory.
        self._dir = Path(tempfile.mkdtemp(prefix="pcc-ssh-", dir="/tmp"))
        self.socket = self._dir / "c"
        self._master: subprocess.Popen[bytes] | None = None
        self._last_attempt: float | None = None
        self._last_error = ""

    def _alive(self) -> bool:
        return self._master is not None and self._master.poll() is None and self.socket.exists()

    def _ready(self) -> None:
        if self._alive():
            return
        self.close()
        now = time.monotonic()
        if self._last_attempt is not None and now - self._last_attempt < self.reconnect_s:
            # The same words until the next attempt: a monitor writes only what changed.
            raise TemporaryError(self._last_error or f"site {self.site.name}: not connected")
        self._last_attempt = now
        self.logins += 1
        argv = [SSH, "-M", "-N", "-S", str(self.socket), *ssh_options(self.site, self.connect_timeout)]
        self._master = subprocess.Popen(
            [*argv, self.site.host],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = now + self.connect_timeout + 5
        while time.monotonic() < deadline:
            if self.socket.exists():
                log.info("site %s: logged in (%d logins so far)", self.site.name, self.logins)
                return
            if self._master.poll() is not None:
                break
            time.sleep(0.05)
        err = self._master_error()
        self.close()
        if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            self._last_error = f"site {self.site.name}: host key of {self.site.host} unknown or changed"
            raise PermanentError(self._last_error)
        where = f"{self.site.host}:{self.site.port}"
        if "connect to host" in err:  # ssh: connect to host H port P: Connection refused
            self._last_error = f"site {self.site.name}: cannot reach {where}: {err.rpartition(': ')[2]}"
        else:
            self._last_error = f"site {self.site.name}: SSH to {where} failed: {err or 'timed out'}"
        raise TemporaryError(self._last_error)

    def _master_error(self) -> str:
        """The last line the master said before it gave up (killed first if it hangs)."""
        master = self._master
        if master is None or master.stderr is None:
            return ""
        if master.poll() is None:
            master.kill()
            master.wait()
        lines = master.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def run(self, command: str, timeout: float, stdin: str = "") -> str:
        """``command`` (already quoted) at the site; its stdout."""
        self._ready()
        argv = [
            SSH,
            "-S",
            str(self.socket),
            "-o",
            "ControlMaster=no",
            *ssh_options(self.site, self.connect_timeout),
        ]
        try:
            proc = subprocess.run(
                [*argv, self.site.host, command],
                input=stdin.encode(),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TemporaryError(f"site {self.site.name}: `{command.split()[2:4]}` did not finish") from None
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode == CONNECTION_LOST and not out.strip():
            self.close()
            said = err.splitlines()[-1] if err else "no answer"
            self._last_error = f"site {self.site.name}: connection lost: {said}"
            raise TemporaryError(self._last_error)
        if not out.strip():
            tail = err.splitlines()[-1:] or [f"exit code {proc.returncode}"]
            raise TemporaryError(f"site {self.site.name}: the site tool printed no JSON ({tail[0]})")
        return out

    def close(self) -> None:
        if self._master is not None:
            if self._master.poll() is None:
                self._master.terminate()
                try:
                    self._master.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._master.kill()
                    self._master.wait()
            self._master = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> SharedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def __del__(self) -> None:  # a monitor's master must not outlive it
        with contextlib.suppress(Exception):
            self.__exit__()
