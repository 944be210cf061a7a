"""The driver's only way to OpenNebula: pyone over XML-RPC, with OpenNebula's errors turned
into :class:`~pcc.common.errors.DriverError` and a per-request timeout.

The password is read from its file when the first call is made and lives only in pyone's
session string; it is never logged and never part of an error message.
"""

from __future__ import annotations

import logging
import xmlrpc.client
from collections.abc import Iterator, Sequence
from functools import reduce
from typing import Any

from pcc.common.errors import DriverError
from pcc.drivers.opennebula.settings import OpenNebulaSettings

log = logging.getLogger(__name__)

try:  # optional dependency: only sites using this driver need pyone
    import pyone
    import requests
    from pyone.server_xrpc import RequestsTransport
except ImportError:  # pragma: no cover - reported by check()/connect()
    pyone = None
    requests = None
    RequestsTransport = object

# pool filter flags and state filters (OpenNebula's XML-RPC reference)
MINE = -3  # objects the connected user owns
ALL = -2  # every object the user may see
ANY_BUT_DONE = -1


class NoSuchObject(DriverError):
    """OpenNebula answered NO_EXISTS (the object is gone, or never was)."""


class _TimeoutTransport(RequestsTransport):  # type: ignore[misc, valid-type]
    """pyone's requests-based transport with a timeout on each request (pyone's own
    ``timeout=`` sets the process-wide default socket timeout instead)."""

    def __init__(self, timeout: float, https: bool) -> None:
        super().__init__()
        self.timeout = timeout
        self.set_https(https)
        self.set_https_verify(True)

    def request(self, host: str, handler: str, request_body: bytes, verbose: bool = False) -> Any:
        url = self._build_url(host, handler)
        resp = requests.post(
            url, data=request_body, headers=self.headers, verify=self.https_verify, timeout=self.timeout
        )
        try:
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise xmlrpc.client.ProtocolError(url, resp.status_code, str(exc), resp.headers) from None
        return self.parse_response(resp)


def read_password(settings: OpenNebulaSettings) -> str:
    """The first line of the password file: the password, or ONE_AUTH's ``user:password``."""
    path = settings.password_file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DriverError(f"cannot read the OpenNebula password file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DriverError(f"the OpenNebula password file {path} is not UTF-8 text") from None
    line = text.splitlines()[0].strip() if text.strip() else ""
    user, sep, rest = line.partition(":")
    if sep and user == settings.user:
        line = rest
    if not line:
        raise DriverError(f"the OpenNebula password file {path} is empty")
    return line


class OneClient:
    """Calls ``one.<method>`` as the configured user."""

    def __init__(self, settings: OpenNebulaSettings) -> None:
        self.settings = settings
        self._server: Any = None

    def _connect(self) -> Any:
        if pyone is None:
            raise DriverError("pyone is not installed (pip install pyone)")
        if self._server is None:
            endpoint = self.settings.endpoint
            session = f"{self.settings.user}:{read_password(self.settings)}"
            server = pyone.OneServer(endpoint, session=session)
            # ServerProxy keeps its transport in a private attribute; pyone builds its own
            # without a timeout, so it is replaced by the same class with one.
            server._ServerProxy__transport = _TimeoutTransport(
                self.settings.request_timeout_s, endpoint.startswith("https")
            )
            self._server = server
        return self._server

    def call(self, what: str, method: str, *args: Any) -> Any:
        """``one.<method>(*args)``; ``what`` says in words what it was for errors."""
        server = self._connect()
        log.debug("OpenNebula: one.%s (%s)", method, what)
        fn = reduce(getattr, method.split("."), server)
        where = f"OpenNebula at {self.settings.endpoint}"
        try:
            return fn(*args)
        except pyone.OneNoExistsException as exc:
            raise NoSuchObject(f"{where}: {what}: {exc}") from None
        except pyone.OneAuthenticationException:
            raise DriverError(f"{where} refused the credentials of user {self.settings.user!r}") from None
        except pyone.OneException as exc:
            raise DriverError(f"{where}: {what}: {exc}") from None
        except (requests.RequestException, xmlrpc.client.ProtocolError, OSError) as exc:
            raise DriverError(f"cannot reach {where} ({what}): {exc}") from None
        except (xmlrpc.client.ResponseError, ValueError, IndexError) as exc:  # not an OpenNebula answer
            raise DriverError(f"{where}: {what}: unreadable answer: {exc}") from None

    # -- finding things by name ------------------------------------------------------------
    def by_name_or_id(self, pool: str, kind: str, ref: str) -> Any:
        """A template, image or vnet the user may use, named ``ref`` (or numbered)."""
        items = self.pool(pool, kind, ALL)
        if ref.isdigit():
            found = [item for item in items if int(item.ID) == int(ref)]
        else:
            found = [item for item in items if ref == item.NAME]
            mine = [item for item in found if self.settings.user == item.UNAME]
            found = mine or found
        if not found:
            raise DriverError(
                f"OpenNebula at {self.settings.endpoint} has no {kind} {ref!r} for {self.settings.user}"
            )
        if len(found) > 1:
            owners = ", ".join(f"{item.ID} (owner {item.UNAME})" for item in found)
            raise DriverError(f"OpenNebula {kind} name {ref!r} is ambiguous: {owners}; use its ID")
        return found[0]

    def pool(self, pool: str, kind: str, flag: int = MINE) -> Sequence[Any]:
        """The items of ``one.<pool>.info`` (templatepool, imagepool, vnpool)."""
        answer = self.call(f"list {kind}s", f"{pool}.info", flag, -1, -1)
        return list(getattr(answer, _POOL_ITEMS[pool]))

    def vms(self) -> Iterator[Any]:
        """The connected user's VMs that are not DONE (the short form of each)."""
        answer = self.call("list VMs", "vmpool.info", MINE, -1, -1, ANY_BUT_DONE)
        yield from answer.VM


_POOL_ITEMS = {"templatepool": "VMTEMPLATE", "imagepool": "IMAGE", "vnpool": "VNET"}
