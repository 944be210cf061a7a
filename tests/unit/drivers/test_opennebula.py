"""The OpenNebula driver's pure parts: its settings, the state table, how a repository entry
names a template or image, and the template text it writes — quoted so that no value can
leave its quotes, as OpenNebula's own parser (re-implemented by the fake) reads it."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcc.common.errors import ConfigError, DriverError, UnsupportedError
from pcc.common.protocol import NodeState
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import (
    ClusterSpec,
    EntRequest,
    ImageRef,
    Interface,
    NetworkIntent,
    NodeDocuments,
    NodeSpec,
    Role,
    SiteContext,
)
from pcc.drivers.opennebula import OpenNebulaSettings, states, vmtemplate
from pcc.drivers.opennebula.client import read_password
from pcc.drivers.opennebula.settings import Source
from pcc.drivers.opennebula.sources import NS, from_domain, source_for
from pcc.drivers.opennebula.syntax import Template, TemplateValueError, quote
from pcc.site.config import NetworkConfig
from tests.fakes.opennebula.syntax import TemplateSyntaxError, parse

BASE = {
    "endpoint": "http://one.example.org:2633/RPC2",
    "user": "pcc",
    "password_file": "one.password",
    "public_network": "public",
    "private_vnet": {"VN_MAD": "vxlan", "PHYDEV": "eth1"},
}


def settings(tmp_path: Path, **changes: object) -> OpenNebulaSettings:
    data = {**BASE, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    return OpenNebulaSettings.from_toml(TomlReader(tmp_path / "site.toml", data, "driver.opennebula"))


# -- settings ----------------------------------------------------------------------------------
def test_settings_read_with_defaults_and_paths_relative_to_the_config(tmp_path: Path) -> None:
    s = settings(tmp_path, files_dir="files", ent_networks={"ent0": "ent-vnet"})
    assert s.password_file == (tmp_path / "one.password").resolve()
    assert s.files_dir == (tmp_path / "files").resolve()
    assert s.private_mode == "create" and s.private_vnet == {"VN_MAD": "vxlan", "PHYDEV": "eth1"}
    assert s.ent_networks == {"ent0": "ent-vnet"} and s.poll_interval_s == 2.0 and s.vnet_cluster_id == -1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpont": "x"}, "unknown setting"),
        ({"endpoint": "one:2633"}, "endpoint: expected an http"),
        ({"user": "a:b"}, "user: not an OpenNebula user name"),
        ({"public_network": " "}, "public_network: missing"),
        ({"private_mode": "share"}, "private_mode: must be"),
        ({"private_mode": "reserve", "private_vnet": None}, "reserve_from: private_mode 'reserve' needs"),
        ({"reserve_from": "pool"}, "reserve_from: only used with"),
        ({"private_mode": "reserve", "reserve_from": "pool"}, "private_vnet: only used with"),
        ({"private_vnet": {"PHYDEV": "eth1"}}, "private_vnet: needs VN_MAD"),
        ({"private_vnet": {"VN_MAD": "vxlan", "AR": "x"}}, "'AR' is not an attribute"),
        ({"private_vnet": {"VN_MAD": "vxlan", "bad-name": "x"}}, "is not an attribute"),
        ({"private_vnet": {"VN_MAD": "x\\"}}, "backslash"),
        ({"ent_networks": {"ent0": 3}}, "ent_networks: expected"),
        ({"poll_interval_s": 0}, "must be a positive number"),
        ({"images": {"tiny": {"frontend": "ami:x"}}}, "expected 'template:NAME'"),
        ({"images": {"tiny": {"login": "template:x"}}}, "unknown role"),
    ],
)
def test_settings_refuse_what_cannot_work_naming_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        settings(tmp_path, **changes)
    assert "[driver.opennebula" in str(caught.value)


def test_the_images_table_names_templates_and_images_by_name_or_id(tmp_path: Path) -> None:
    s = settings(tmp_path, images={"tiny": {"frontend": "template:tiny fe", "compute": "image:12"}})
    assert s.images["tiny"] == {"frontend": Source("template", "tiny fe"), "compute": Source("image", "12")}


def test_the_password_is_read_when_used_and_never_shown(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(DriverError, match="cannot read the OpenNebula password file"):
        read_password(s)
    s.password_file.write_text("s3cret\n")
    assert read_password(s) == "s3cret"
    s.password_file.write_text("pcc:s3cret\n")  # ONE_AUTH's form
    assert read_password(s) == "s3cret"
    s.password_file.write_text("pcc:\n")
    with pytest.raises(DriverError, match="is empty"):
        read_password(s)
    assert "s3cret" not in repr(s)  # the settings hold the file's path, never its content


# -- states ------------------------------------------------------------------------------------
def test_the_state_numbers_are_opennebulas() -> None:
    pyone = pytest.importorskip("pyone")
    assert {e.name: e.value for e in pyone.VM_STATE} == states.VM_STATES
    assert {e.name: e.value for e in pyone.LCM_STATE} == states.LCM_STATES


@pytest.mark.parametrize(
    ("state", "lcm", "expected"),
    [
        ("PENDING", "LCM_INIT", NodeState.PENDING),
        ("HOLD", "LCM_INIT", NodeState.PENDING),
        ("ACTIVE", "PROLOG", NodeState.BOOTING),
        ("ACTIVE", "BOOT", NodeState.BOOTING),
        ("ACTIVE", "RUNNING", NodeState.RUNNING),
        ("ACTIVE", "HOTPLUG_NIC", NodeState.RUNNING),
        ("ACTIVE", "SHUTDOWN", NodeState.STOPPED),
        ("ACTIVE", "EPILOG", NodeState.STOPPED),
        ("ACTIVE", "BOOT_FAILURE", NodeState.ERROR),
        ("ACTIVE", "PROLOG_FAILURE", NodeState.ERROR),
        ("ACTIVE", "UNKNOWN", NodeState.UNKNOWN),
        ("POWEROFF", "LCM_INIT", NodeState.STOPPED),
        ("DONE", "LCM_INIT", NodeState.STOPPED),
        ("FAILED", "LCM_INIT", NodeState.ERROR),
        ("CLONING_FAILURE", "LCM_INIT", NodeState.ERROR),
    ],
)
def test_opennebula_states_map_through_the_table(state: str, lcm: str, expected: NodeState) -> None:
    assert states.node_state(states.VM_STATES[state], states.LCM_STATES[lcm]) is expected


def test_every_active_lcm_state_but_unknown_is_in_the_table_and_anything_else_is_unknown() -> None:
    unmapped = [n for n, v in states.LCM_STATES.items() if (states.ACTIVE, v) not in states.STATE_TABLE]
    assert unmapped == ["UNKNOWN"]
    assert states.node_state(99, 0) is NodeState.UNKNOWN
    assert states.node_state(states.ACTIVE, 999) is NodeState.UNKNOWN
    assert states.node_state(states.VM_STATES["POWEROFF"], 3) is NodeState.UNKNOWN  # not ACTIVE: LCM is 0
    assert states.describe(3, 3) == "ACTIVE/RUNNING" and states.describe(8, 0) == "POWEROFF"


# -- quoting -----------------------------------------------------------------------------------
CONTROL = "".join(chr(c) for c in (*range(0x09), *range(0x0B, 0x20), 0x7F))  # but tab and newline
writable = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=CONTROL)).filter(
    lambda s: not s.endswith("\\") and "]]>" not in s
)


@given(st.lists(writable, min_size=1, max_size=4))
def test_any_writable_value_reads_back_unchanged_and_nothing_else_appears(values: list[str]) -> None:
    t = Template()
    for i, value in enumerate(values):
        t.set(f"A{i}", value)
    t.vector("CONTEXT", {f"K{i}": v for i, v in enumerate(values)})
    parsed = parse(t.render())
    assert parsed.items == [
        *((f"A{i}", v) for i, v in enumerate(values)),
        ("CONTEXT", {f"K{i}": v for i, v in enumerate(values)}),
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        '" INJECTED = "yes',
        '"]\nNIC = [ NETWORK_ID = "0" ]\nX = ["',
        'x\\" , FILES = "/etc/shadow',
        '\\\\"',
        "a\nb = [ c = d ]",
    ],
)
def test_values_that_try_to_leave_their_quotes_stay_values(hostile: str) -> None:
    text = (
        Template()
        .vector("CONTEXT", {"SSH_PUBLIC_KEY": hostile, "NETWORK": "YES"})
        .set("NAME", hostile)
        .render()
    )
    parsed = parse(text)
    assert parsed.items == [("CONTEXT", {"SSH_PUBLIC_KEY": hostile, "NETWORK": "YES"}), ("NAME", hostile)]


@pytest.mark.parametrize("bad", ["ends in \\", "a ]]> b", "nul\x00", "bell\x07"])
def test_values_the_syntax_cannot_carry_are_refused(bad: str) -> None:
    with pytest.raises(TemplateValueError):
        quote(bad)


def test_a_trailing_backslash_really_would_break_out() -> None:
    """Why quote() refuses it: written naively, two values become an attribute of their own."""
    first, second = "\\", " INJECTED = "
    naive = f'A = "{first}"\nB = "{second}"1"\n'
    assert parse(naive).items == [("A", '"\nB = '), ("INJECTED", "1")]
    with pytest.raises(TemplateValueError):
        Template().set("A", first).set("B", second).render()
    with pytest.raises(TemplateSyntaxError):
        parse('A = "x ]]> y"\n')


def test_attribute_names_are_checked() -> None:
    with pytest.raises(TemplateValueError):
        Template().set("bad name", "x")
    with pytest.raises(TemplateValueError):
        Template().vector("CONTEXT", {"a=b": "x"})


# -- what the driver writes ------------------------------------------------------------------
def spec_for(tmp_path: Path, domain_meta: str = "", ent: tuple[EntRequest, ...] = ()) -> ClusterSpec:
    @dataclasses.dataclass(frozen=True)
    class Tpl:
        domain_xml: str

    dom = f"<domain><name>x</name><metadata>{domain_meta}</metadata><devices/></domain>"

    def iface(net: str, i: int, ip: str | None, gw: str | None = None) -> Interface:
        return Interface(
            net, f"52:54:00:00:00:{i:02x}", f"eth{i}", ip, 24 if ip else None, gw, ("10.1.0.1",) if gw else ()
        )

    fe_ifaces = (iface("public", 0, "192.0.2.20"), iface("private", 1, "10.1.0.1"))
    fe_ifaces += tuple(iface(e.name, 2 + k, None) for k, e in enumerate(ent))
    fe = NodeSpec("c1", "c1-frontend", "c1-frontend", Role.FRONTEND, 2, 1024, fe_ifaces)
    co_ifaces = (iface("private", 0, "10.1.0.10", "10.1.0.1"),)
    co = NodeSpec(
        "c1", "c1-compute-0", "c1-compute-0", Role.COMPUTE, 1, 512, co_ifaces, depends_on="c1-frontend"
    )
    docs = {
        n.name: NodeDocuments(f"<vc name='{n.name}'/>", "#cloud-config\nhostname: x\n", "", "")
        for n in (fe, co)
    }
    return ClusterSpec(
        "c1",
        ImageRef("tiny", tmp_path, "local-beowulf", {"frontend": Tpl(dom), "compute": Tpl(dom)}),
        (fe, co),
        "ssh-ed25519 AAAAC3Nza scientist@lab",
        NetworkIntent("10.1.0.0/24", "192.0.2.20", ent),
        docs,
    )


def test_a_nodes_context_carries_the_key_user_data_and_vc_out(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    fe = spec.frontend
    ctx = vmtemplate.context(
        fe, spec.documents[fe.name], spec.ssh_key, {"START_SCRIPT": "x", "USER_DATA": "old"}, "/f/vc-out.xml"
    )
    assert ctx["SSH_PUBLIC_KEY"] == spec.ssh_key and ctx["NETWORK"] == "YES" and ctx["START_SCRIPT"] == "x"
    assert base64.b64decode(ctx["USER_DATA"]).decode().startswith("#cloud-config")
    assert ctx["USERDATA_ENCODING"] == "base64" and ctx["FILES"] == "/f/vc-out.xml"
    assert base64.b64decode(ctx["PCC_VC_OUT"]).decode() == "<vc name='c1-frontend'/>"
    assert (ctx["PCC_CLUSTER"], ctx["PCC_ROLE"], ctx["SET_HOSTNAME"]) == ("c1", "frontend", "c1-frontend")


def test_nics_follow_the_planned_interfaces(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, ent=(EntRequest("ent0", "172.16.0.0/24"),))
    nets = vmtemplate.Networks(public=0, private=7, ent={"ent0": 3})
    assert vmtemplate.nics(spec.frontend, spec, nets) == [
        {"NETWORK_ID": 0, "IP": "192.0.2.20"},
        {"NETWORK_ID": 7, "IP": "10.1.0.1"},
        {"NETWORK_ID": 3},
    ]
    user_mode = dataclasses.replace(spec, network=dataclasses.replace(spec.network, public_address=None))
    assert vmtemplate.nics(spec.frontend, user_mode, nets)[0] == {"NETWORK_ID": 0}  # leased by OpenNebula
    with pytest.raises(DriverError, match="no OpenNebula network for interface ent0"):
        vmtemplate.nics(spec.frontend, spec, vmtemplate.Networks(public=0, private=7))


def test_a_vm_template_reads_back_as_written(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    co = spec.computes[0]
    nets = vmtemplate.Networks(public=0, private=7)
    ctx = vmtemplate.context(co, spec.documents[co.name], spec.ssh_key)
    parsed = parse(vmtemplate.vm_template(co, vmtemplate.nics(co, spec, nets), ctx, {"IMAGE_ID": 4}).render())
    assert (
        parsed.get("NAME") == "pcc-c1-compute-0"
        and parsed.get("MEMORY") == "512"
        and parsed.get("VCPU") == "1"
    )
    assert parsed.vectors("DISK") == [{"IMAGE_ID": "4"}]
    assert parsed.vectors("NIC") == [{"NETWORK_ID": "7", "IP": "10.1.0.10"}]
    assert parsed.get("CONTEXT") == ctx and parsed.get("LABELS") == "PCC/c1"
    extra = parse(vmtemplate.vm_attributes(co, [], ctx).render())
    assert extra.get("NAME") is None and extra.vectors("DISK") == []  # instantiating: the template's disk


def test_the_private_network_holds_each_planned_address_and_mac(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    parsed = parse(vmtemplate.private_vnet(spec, {"VN_MAD": "vxlan", "AUTOMATIC_VLAN_ID": "YES"}).render())
    assert parsed.get("NAME") == "pcc-c1-private" and parsed.get("VN_MAD") == "vxlan"
    assert (parsed.get("NETWORK_ADDRESS"), parsed.get("NETWORK_MASK")) == ("10.1.0.0", "255.255.255.0")
    assert parsed.vectors("AR") == [
        {"TYPE": "IP4", "IP": "10.1.0.1", "MAC": "52:54:00:00:00:01", "SIZE": "1"},
        {
            "TYPE": "IP4",
            "IP": "10.1.0.10",
            "MAC": "52:54:00:00:00:00",
            "SIZE": "1",
            "GATEWAY": "10.1.0.1",
            "DNS": "10.1.0.1",
        },
    ]
    first = parse(vmtemplate.reservation("pcc-c1-private", "10.1.0.1", "0", None).render())
    more = parse(vmtemplate.reservation(None, "10.1.0.10", "0", 12).render())
    assert first.items == [("SIZE", "1"), ("AR_ID", "0"), ("IP", "10.1.0.1"), ("NAME", "pcc-c1-private")]
    assert more.items == [("SIZE", "1"), ("AR_ID", "0"), ("IP", "10.1.0.10"), ("NETWORK_ID", "12")]


# -- how a repository entry names its source -------------------------------------------------
def test_a_domain_names_a_template_or_an_image(tmp_path: Path) -> None:
    assert from_domain(
        f"<domain><metadata><o:opennebula xmlns:o='{NS}' template='fe'/></metadata></domain>", "x"
    ) == Source("template", "fe")
    assert from_domain(
        f"<domain><metadata><opennebula xmlns='{NS}' image='7'/></metadata></domain>", "x"
    ) == Source("image", "7")
    assert from_domain("<domain><metadata/></domain>", "x") is None
    for bad in (f"<opennebula xmlns='{NS}' image='a' template='b'/>", f"<opennebula xmlns='{NS}'/>"):
        with pytest.raises(ConfigError, match="exactly one of"):
            from_domain(f"<domain><metadata>{bad}</metadata></domain>", "x")


def test_the_sites_table_overrides_the_repository_entry(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, f"<o:opennebula xmlns:o='{NS}' template='from-repo'/>")
    s = settings(tmp_path, images={"tiny": {"compute": "image:from-site"}})
    assert source_for(spec, "frontend", s) == Source("template", "from-repo")
    assert source_for(spec, "compute", s) == Source("image", "from-site")
    with pytest.raises(ConfigError, match=r"names no OpenNebula template or image.*images\.tiny"):
        source_for(spec_for(tmp_path), "frontend", settings(tmp_path))


# -- validate ----------------------------------------------------------------------------------
def driver(tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    from pcc.drivers.opennebula import OpenNebulaDriver

    site = SiteContext("s", tmp_path, NetworkConfig("bridge", "10.1.0.0/24"))
    return OpenNebulaDriver(settings(tmp_path, **changes), site)


def test_ent_is_refused_as_the_base_class_does_where_the_site_names_no_ent_network(tmp_path: Path) -> None:
    meta = f"<o:opennebula xmlns:o='{NS}' template='t'/>"
    spec = spec_for(tmp_path, meta, ent=(EntRequest("ent0", "172.16.0.0/24"),))
    with pytest.raises(UnsupportedError, match="not supported at this site"):
        driver(tmp_path).validate(spec)
    driver(tmp_path, ent_networks={"ent0": "ent-vnet"}).validate(spec)
    with pytest.raises(UnsupportedError, match="ENT network ent0 is not supported at this site"):
        driver(tmp_path, ent_networks={"ent1": "x"}).validate(spec)
    with pytest.raises(ConfigError, match="names no OpenNebula"):
        driver(tmp_path).validate(spec_for(tmp_path))
