"""How a PCC cluster is named in Rocks, and back (pure).

A cluster ``c`` is the Rocks virtual cluster whose frontend VM is ``<prefix>c`` (the
``name_prefix`` setting, ``pcc-`` by default, so PCC's clusters are told apart from the
site's others and from physical hosts). ``rocks add cluster ... fe-name=<prefix>c
cluster-naming=true`` names its compute VMs ``vm-<prefix>c-0``, ``vm-<prefix>c-1``, ...
PCC reports them under the site's node names: ``c-frontend`` and ``c-compute-<i>``.
"""

from __future__ import annotations

import re

from pcc.common.protocol import Role


def frontend_host(prefix: str, cluster: str) -> str:
    return f"{prefix}{cluster}"


def compute_host(frontend: str, index: int) -> str:
    return f"vm-{frontend}-{index}"


def cluster_of(prefix: str, frontend: str) -> str | None:
    """The PCC cluster a Rocks frontend VM is, or None when it is not one of PCC's."""
    if not frontend.startswith(prefix) or len(frontend) == len(prefix):
        return None
    return frontend[len(prefix) :]


def node_of(cluster: str, frontend: str, host: str) -> tuple[str, Role]:
    """The site's name and role of a Rocks host of ``cluster`` (frontend VM ``frontend``)."""
    if host == frontend:
        return f"{cluster}-frontend", Role.FRONTEND
    match = re.fullmatch(rf"vm-{re.escape(frontend)}-(\d+)", host)
    if match:
        return f"{cluster}-compute-{int(match.group(1))}", Role.COMPUTE
    return host, Role.COMPUTE  # a VM the site's administrator added to the cluster by hand


def host_of(cluster: str, frontend: str, node: str) -> str:
    """The Rocks host of one of the site's node names (the inverse of :func:`node_of`)."""
    if node == f"{cluster}-frontend":
        return frontend
    match = re.fullmatch(rf"{re.escape(cluster)}-compute-(\d+)", node)
    return compute_host(frontend, int(match.group(1))) if match else node
