"""How a repository entry names what a node boots from in OpenNebula.

In ``vc-in.xml``, each role's libvirt ``<domain>`` may carry (the repository passes the
domain through untouched)::

    <metadata>
      <one:opennebula xmlns:one="urn:pcc:opennebula:1" template="tiny-compute"/>
    </metadata>

with ``template=`` (an OpenNebula VM template, instantiated) or ``image=`` (an OpenNebula
image attached as the VM's disk), by name or numeric ID. The site's
``[driver.opennebula.images.<image>]`` table (``frontend = "template:NAME"``) overrides it,
so a repository shared with other drivers boots here without editing its files.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from pcc.common.errors import ConfigError
from pcc.drivers.base import ClusterSpec
from pcc.drivers.opennebula.settings import OpenNebulaSettings, Source

NS = "urn:pcc:opennebula:1"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def from_domain(domain_xml: str, where: str) -> Source | None:
    """The ``<one:opennebula>`` element of a role's domain, if it has one."""
    try:
        domain = etree.fromstring(domain_xml.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ConfigError(f"{where}: malformed <domain>: {exc}") from None
    found = domain.findall(f"metadata/{{{NS}}}opennebula")
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"{where}: more than one <opennebula xmlns='{NS}'> element")
    el = found[0]
    given = [(kind, el.get(kind)) for kind in ("template", "image") if el.get(kind) is not None]
    if len(given) != 1 or not (given[0][1] or "").strip():
        raise ConfigError(f"{where}: <opennebula> needs exactly one of template='...' or image='...'")
    kind, ref = given[0]
    return Source(kind, (ref or "").strip())


def source_for(spec: ClusterSpec, role: str, settings: OpenNebulaSettings) -> Source:
    """The role's source: the site's table first, then the repository entry.

    Raises
    ------
    ConfigError
        Neither names one.
    """
    image = spec.image
    configured = settings.images.get(image.name, {}).get(role)
    if configured is not None:
        return configured
    template: Any = image.templates.get(role)
    domain_xml = getattr(template, "domain_xml", None)
    where = f"image {image.name} ({image.directory / 'vc-in.xml'}) <{role}>"
    found = from_domain(domain_xml, where) if isinstance(domain_xml, str) else None
    if found is None:
        raise ConfigError(
            f"{where}: names no OpenNebula template or image; add <metadata><opennebula xmlns='{NS}' "
            f"template='...'/></metadata> to its <domain>, or [driver.opennebula.images.{image.name}] "
            f'{role} = "template:NAME" to the site configuration'
        )
    return found
