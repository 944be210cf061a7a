"""The fake's XML-RPC endpoint: OpenNebula's ``/RPC2`` on a loopback port, answering each
``one.*`` method the driver calls the way oned does.

* Every method takes the session (``user:password``) first; a wrong one answers
  AUTHENTICATION. Parameters are read by position and type as oned's ``paramList.getInt``
  / ``getString`` / ``getBoolean`` do: a missing or mistyped one is an XML-RPC fault
  (xmlrpc-c's -501), as is an unknown method (-506).
* Success is ``[true, value, 0]``; failure ``[false, message, code, resp_id, <i8>
  replication index]`` (``RequestXRPC::make_response``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import xmlrpc.client
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from tests.fakes.opennebula import documents as docs
from tests.fakes.opennebula.cloud import (
    ACTION,
    DONE,
    RPC_API,
    FakeCloud,
    OneError,
    User,
)
from tests.fakes.opennebula.syntax import Template

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20


class I8(int):
    """An XML-RPC ``<i8>`` (xmlrpc-c's value_i8); Python's marshaller writes only ``<int>``."""


class _I8Marshaller(xmlrpc.client.Marshaller):
    dispatch: ClassVar[dict[type, Any]] = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_i8(self, value: int, write: Callable[[str], Any]) -> None:
        write(f"<value><i8>{int(value)}</i8></value>\n")

    dispatch[I8] = dump_i8


def _response(value: Any) -> bytes:
    params = _I8Marshaller("utf-8", allow_none=False).dumps((value,))  # "<params>...</params>"
    return f"<?xml version='1.0'?>\n<methodResponse>\n{params}</methodResponse>\n".encode()


def _fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode()


class Params:
    """oned's view of a call's parameters (index 0 is the session)."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values

    def size(self) -> int:
        return len(self.values)

    def _get(self, index: int, kind: type) -> Any:
        if index >= len(self.values):
            raise xmlrpc.client.Fault(-501, "Not enough parameters")
        value = self.values[index]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise xmlrpc.client.Fault(-501, f"Type mismatch: parameter {index} is not an integer")
        if kind is bool and not isinstance(value, bool):
            raise xmlrpc.client.Fault(-501, f"Type mismatch: parameter {index} is not a boolean")
        if kind is str and not isinstance(value, str):
            raise xmlrpc.client.Fault(-501, f"Type mismatch: parameter {index} is not a string")
        return value

    def int(self, i: int, default: int | None = None) -> int:
        return self._get(i, int) if default is None or i < len(self.values) else default

    def str(self, i: int, default: str | None = None) -> str:
        return self._get(i, str) if default is None or i < len(self.values) else default

    def bool(self, i: int, default: bool | None = None) -> bool:
        return self._get(i, bool) if default is None or i < len(self.values) else default


Handler = Callable[[FakeCloud, User, Params, str], Any]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


@method("one.system.version")
def _version(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    return cloud.version


# -- VMs ---------------------------------------------------------------------------------------
@method("one.vm.allocate")
def _vm_allocate(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    tmpl = cloud.parse_or_fail(p.str(1), m)
    return cloud.create_vm(user, tmpl, p.bool(2, False), m)


@method("one.vm.info")
def _vm_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    p.bool(2, False)  # decrypt
    return docs.vm_info(cloud.vm(p.int(1), m))


@method("one.vm.action")
def _vm_action(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    action, vid = p.str(1), p.int(2)
    vm = cloud.vm(vid, m)
    if action not in ("terminate", "terminate-hard"):
        raise OneError(ACTION, f'[{m}] The fake OpenNebula does not model action "{action}"', vid)
    if vm.state == DONE:
        raise OneError(ACTION, f'[{m}] Error performing action "{action}": VM is DONE', vid)
    cloud.terminate(vm, action == "terminate-hard", m)
    return vid


@method("one.vmpool.info")
def _vmpool_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    keep = cloud.pool_filter(user, p.int(1), p.int(2), p.int(3))
    state = p.int(4)
    if p.size() > 5:
        query = p.str(5)
        if query:
            raise OneError(RPC_API, f"[{m}] The fake OpenNebula does not model pool queries")
    vms = [
        vm
        for vm in cloud.vms.values()
        if keep(vm) and (state == -2 or (state == -1 and vm.state != DONE) or vm.state == state)
    ]
    return docs.vm_pool(vms)


# -- VM templates ------------------------------------------------------------------------------
@method("one.template.info")
def _template_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    p.bool(2, False)  # extended
    p.bool(3, False)  # decrypt
    return docs.template_info(cloud.template_(p.int(1), m))


@method("one.templatepool.info")
def _templatepool_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    keep = cloud.pool_filter(user, p.int(1), p.int(2), p.int(3))
    return docs.template_pool(t for t in cloud.templates.values() if keep(t))


@method("one.template.instantiate")
def _template_instantiate(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    """TemplateAPI::instantiate_helper: the template, the extra template merged over it."""
    tpl = cloud.template_(p.int(1), m)
    name, hold = p.str(2), p.bool(3, False)
    extra = p.str(4, "")
    if p.bool(5, False):
        raise OneError(RPC_API, f"[{m}] The fake OpenNebula does not model persistent instantiation")
    tmpl: Template = tpl.template.copy()
    if extra:
        tmpl.merge(cloud.parse_or_fail(extra, m))
    for attr in ("NAME", "TEMPLATE_NAME", "TEMPLATE_ID"):
        tmpl.erase(attr)
    tmpl.replace("TEMPLATE_NAME", tpl.name)
    tmpl.replace("TEMPLATE_ID", str(tpl.id))
    if name:
        tmpl.replace("NAME", name)
    return cloud.create_vm(user, tmpl, hold, m)


# -- images ------------------------------------------------------------------------------------
@method("one.image.info")
def _image_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    p.bool(2, False)
    return docs.image_info(cloud.image(p.int(1), m))


@method("one.imagepool.info")
def _imagepool_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    keep = cloud.pool_filter(user, p.int(1), p.int(2), p.int(3))
    return docs.image_pool(i for i in cloud.images.values() if keep(i))


@method("one.image.clone")
def _image_clone(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    source = cloud.image(p.int(1), m)
    name = p.str(2)
    p.int(3, -1)  # datastore: the fake has one
    return cloud.clone_image(user, source, name, m)


@method("one.image.delete")
def _image_delete(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    img = cloud.image(p.int(1), m)
    p.bool(2, False)  # force
    cloud.delete_image(img, m)
    return img.id


# -- virtual networks --------------------------------------------------------------------------
@method("one.vn.allocate")
def _vn_allocate(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    tmpl = cloud.parse_or_fail(p.str(1), m)
    p.int(2, -1)  # cluster: the fake has one
    return cloud._vnet_from(tmpl, user, m)


@method("one.vn.info")
def _vn_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    p.bool(2, False)
    return docs.vnet_info(cloud.vnet(p.int(1), m))


@method("one.vnpool.info")
def _vnpool_info(cloud: FakeCloud, user: User, p: Params, m: str) -> str:
    keep = cloud.pool_filter(user, p.int(1), p.int(2), p.int(3))
    return docs.vnet_pool(v for v in cloud.vnets.values() if keep(v))


@method("one.vn.reserve")
def _vn_reserve(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    parent = cloud.vnet(p.int(1), m)
    return cloud.reserve(user, parent, cloud.parse_or_fail(p.str(2), m, ACTION), m)


@method("one.vn.delete")
def _vn_delete(cloud: FakeCloud, user: User, p: Params, m: str) -> int:
    vnet = cloud.vnet(p.int(1), m)
    cloud.delete_vnet(vnet, m)
    return vnet.id


# -- HTTP --------------------------------------------------------------------------------------
def dispatch(cloud: FakeCloud, name: str, params: tuple[Any, ...]) -> Any:
    """One call, as oned answers it (a Fault raised for what xmlrpc-c itself refuses)."""
    handler = METHODS.get(name)
    if handler is None:
        raise xmlrpc.client.Fault(-506, f"Method '{name}' not defined")
    p = Params(params)
    with cloud.lock:
        cloud.calls.append(name)
        cloud.tick()
        try:
            user = cloud.authenticate(p.str(0), name)
            value = handler(cloud, user, p, name)
        except OneError as exc:
            return [False, exc.message, exc.code, exc.resp_id, I8(-1)]
        if cloud.record and isinstance(value, str) and value.startswith("<"):
            cloud.documents.append((name, value))
    return [True, value, 0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/RPC2":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self.send_error(400)
            return
        try:
            params, name = xmlrpc.client.loads(self.rfile.read(length), use_builtin_types=False)
            body = _response(dispatch(self.server.cloud, name or "", params))
        except xmlrpc.client.Fault as fault:
            body = _fault(fault.faultCode, fault.faultString)
        except Exception as exc:  # a malformed request: xmlrpc-c answers a fault too
            body = _fault(-503, f"Call XML not a proper XML-RPC call: {exc}")
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake OpenNebula: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cloud: FakeCloud, host: str, port: int) -> None:
        self.cloud = cloud
        super().__init__((host, port), _Handler)


def start_fake_opennebula(
    cloud: FakeCloud | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Serve ``cloud`` (a new, empty one by default) on a thread; returns its XML-RPC URL and
    a function that stops it."""
    server = _Server(cloud if cloud is not None else FakeCloud(), host, port)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-opennebula", daemon=True)
    thread.start()

    def stop() -> None:
        with contextlib.suppress(Exception):
            server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    url = f"http://{host}:{server.server_address[1]}/RPC2"
    return url, stop
