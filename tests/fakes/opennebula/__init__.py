"""A stand-in OpenNebula for the OpenNebula driver's tests (OpenNebula cannot run here): an
XML-RPC server on loopback that implements the ``one.*`` methods the driver calls, keeps
its objects in memory (:class:`FakeCloud`) and answers in OpenNebula's formats —
``[success, body, errcode]`` and XML documents valid against OpenNebula's published XSDs
(``xsd/``, from OpenNebula's repository; see ``xsd/README.md``).

Methods: ``one.system.version``; ``one.vm.allocate``, ``one.vm.info``, ``one.vm.action``
(terminate, terminate-hard), ``one.vmpool.info``;
``one.template.info``, ``one.template.instantiate``, ``one.templatepool.info``;
``one.image.info``, ``one.image.clone``, ``one.image.delete``, ``one.imagepool.info``;
``one.vn.allocate``, ``one.vn.info``, ``one.vn.reserve``, ``one.vn.delete``,
``one.vnpool.info``.

Not modelled: hosts, datastores, clusters and the scheduler (every VM lands on
"fake-host-0" after one step), permissions and ACLs beyond ownership, quotas other than
the VM-count one tests set (:meth:`FakeCloud.vms_limited_to`), VM actions other than
terminate, template variables (``$NETWORK[...]``, ``$USER[...]``) in CONTEXT, volatile
disks, IPv6 and ETHER-only leases' context, security groups (every NIC is in group 0),
persistent instantiation, pool queries, the XML form of templates, monitoring beyond CPU
and memory, and image or network driver failures (a FILES path oned cannot read is, as on a
real host, a PROLOG_FAILURE).

Run alone: ``python -m tests.fakes.opennebula --port 2633`` (a demo cloud; see
:mod:`.__main__`).
"""

from tests.fakes.opennebula.cloud import FakeCloud, OneError
from tests.fakes.opennebula.server import start_fake_opennebula

__all__ = ["FakeCloud", "OneError", "start_fake_opennebula"]
