"""The site protocol read at the controller: what a broken or hostile site can answer."""

from __future__ import annotations

import json

import pytest

from pcc.common import errors, protocol
from pcc.common.protocol import NodeInfo, ProtocolError, parse_envelope

NODE = {
    "cluster": "r1",
    "name": "r1-frontend",
    "role": "frontend",
    "state": "running",
    "vcpus": 1,
    "memory_mib": 128,
    "private_ip": "10.1.0.1",
    "public_ip": "127.0.0.2",
    "ssh_port": 22000,
}


def test_a_good_listing_reads_back_as_typed_nodes() -> None:
    env = parse_envelope(json.dumps(protocol.success("list cluster", [NODE])))
    (node,) = [NodeInfo.from_doc(n) for n in env.result]
    assert node.to_doc() == NODE and node.state is protocol.NodeState.RUNNING


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"ok": "yes"}',
        '{"ok": true, "n": ' + "9" * 5000 + "}",
        "[" * 100000 + "]" * 100000,
    ],
)
def test_garbage_from_a_site_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_envelope(text)


@pytest.mark.parametrize(
    ("key", "value"),
    [("public_ip", "-oProxyCommand=touch /tmp/x"), ("private_ip", "10.1.0.1; rm"), ("ssh_port", 70000)],
)
def test_addresses_that_would_reach_a_login_command_must_be_addresses(key: str, value: object) -> None:
    with pytest.raises(ProtocolError):
        NodeInfo.from_doc({**NODE, key: value})


def test_an_unknown_node_state_is_unknown_not_a_crash() -> None:
    assert NodeInfo.from_doc({**NODE, "state": "weird"}).state is protocol.NodeState.UNKNOWN


def test_an_error_document_raises_the_exception_it_names() -> None:
    doc = protocol.failure("boot", protocol.ErrorDoc("CapacityError", "not enough CPUs", 4))
    env = parse_envelope(json.dumps(doc))
    assert env.error is not None
    exc = env.error.exception("site a: ")
    assert isinstance(exc, errors.CapacityError) and str(exc) == "site a: not enough CPUs"
    assert type(protocol.ErrorDoc("Whatever", "x", 1).exception()) is errors.PccError
