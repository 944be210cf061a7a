"""The simulated back-end on disk: one JSON state file, and one documents file per cluster.

``<state_file>`` (``simulated.json``) is one JSON document, written one cluster a line::

    {"format":"pcc-simulated/1","clusters":{
    "<cluster>":{"created":EPOCH,"documents":SHA256,"nodes":[{"name":...,
      "role":"frontend"|"compute","vcpus":N,"memory_mib":N,"private_ip":...|null,
      "public_ip":...|null,"ssh_port":N|null,"start":EPOCH,"ready":EPOCH,
      "status":"up"|"stopped"|"failed"},...]},
    ...
    }}

so that one cluster is found (and changed) without parsing the others: listing one cluster
and every change cost a scan of the file, not a parse of all of it. Any JSON reader reads
it whole (listing every cluster does); a file laid out otherwise is still read, and
rewritten in this layout at its next change.

``<state_file stem>-documents/<cluster>.json`` holds each node's contextualization texts
(``{"<node>": {"user-data": ..., "vc-out.xml": ..., "meta-data": ..., "network-config": ...}}``)
whose digest is the cluster's ``documents``; they are kept out of the state file so that
listing thousands of clusters reads only what it needs (a node's record is ten small
values: what a listing reports, and the times and status its state derives from).

Both are replaced whole (a temporary file in the same directory, then ``os.replace``), so a
reader never sees half a file and needs no lock; every change is a read-modify-write under
an exclusive ``flock`` on ``<state_file>.lock``, as several ``pragma`` processes may run at
once. Nothing is ``fsync``'d: this is a simulator, a crash may lose the last change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pcc.common import names
from pcc.common.errors import DriverError
from pcc.common.locks import file_lock

FORMAT = "pcc-simulated/1"
DOCUMENT_NAMES = ("user-data", "vc-out.xml", "meta-data", "network-config")
HEADER = b'{"format":"pcc-simulated/1","clusters":{\n'
FOOTER = b"}}\n"
_DECODER = json.JSONDecoder()

Cluster = dict[str, Any]  # {"created": ..., "nodes": [...]}


def digest(documents: Mapping[str, Mapping[str, str]]) -> str:
    """One digest of a cluster's documents, by node (nodes, names and texts in a fixed order)."""
    h = hashlib.sha256()
    for node in sorted(documents):
        h.update(f"{node}\0{len(documents[node])}\0".encode())
        for name in DOCUMENT_NAMES:
            text = documents[node].get(name, "").encode()
            h.update(f"{name}\0{len(text)}\0".encode())
            h.update(text)
    return h.hexdigest()


def _key(name: str) -> bytes:
    return json.dumps(name).encode()  # ASCII: the same bytes whoever writes it


def encode_line(name: str, cluster: Cluster) -> bytes:
    """One cluster's line (no newline inside: JSON escapes those in strings)."""
    return _key(name) + b":" + json.dumps(cluster, separators=(",", ":")).encode()


def render(lines: list[bytes]) -> bytes:
    return HEADER + b",\n".join(lines) + (b"\n" if lines else b"") + FOOTER


def split_lines(raw: bytes) -> dict[str, bytes] | None:
    """The file's cluster lines by name, unparsed; None when it is not laid out a line each."""
    if not (raw.startswith(HEADER) and raw.endswith(FOOTER)):
        return None
    lines: dict[str, bytes] = {}
    for line in raw[len(HEADER) : -len(FOOTER)].split(b"\n"):
        if not line:
            continue
        line = line.removesuffix(b",")
        try:
            name, end = _DECODER.raw_decode(line.decode())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(name, str) or line[end : end + 1] != b":":
            return None
        lines[name] = line
    return lines


def _value(name: str, line: bytes) -> Cluster:
    return json.loads(line[len(_key(name)) + 1 :])  # type: ignore[no-any-return]


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, replacing what was there in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Change:
    """The state being changed under the lock: clusters read when asked for, and written
    back (the others' lines as they were) when the block ends."""

    def __init__(self, lines: dict[str, bytes]) -> None:
        self._lines: dict[str, bytes | None] = dict(lines)  # None: changed, see _values
        self._values: dict[str, Cluster] = {}
        self.changed = False

    def __contains__(self, name: str) -> bool:
        return name in self._lines

    def names(self) -> list[str]:
        return list(self._lines)

    def get(self, name: str) -> Cluster | None:
        """A copy of the cluster's entry (``put`` it back to change it), None if none."""
        if name not in self._lines:
            return None
        line = self._lines[name]
        if line is None:
            return json.loads(json.dumps(self._values[name]))  # type: ignore[no-any-return]
        try:
            found = _value(name, line)
        except ValueError as exc:
            raise DriverError(
                f"cluster {name}: a malformed entry in the simulated site's state: {exc}"
            ) from None
        if not isinstance(found, dict):
            raise DriverError(f"cluster {name}: a malformed entry in the simulated site's state")
        return found

    def put(self, name: str, cluster: Cluster) -> None:
        self._lines[name] = None
        self._values[name] = cluster
        self.changed = True

    def pop(self, name: str) -> Cluster | None:
        """Remove the cluster's entry, returned (``{}`` when it was malformed: still removed)."""
        if name not in self._lines:
            return None
        try:
            found = self.get(name)
        except DriverError:
            found = {}
        del self._lines[name]
        self._values.pop(name, None)
        self.changed = True
        return found

    def render(self) -> bytes:
        return render(
            [line if line is not None else encode_line(n, self._values[n]) for n, line in self._lines.items()]
        )


class Store:
    """The state file at ``path`` and the documents directory beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.documents_dir = path.with_name(f"{path.stem}-documents")

    # -- the state file --------------------------------------------------------------------
    def _raw(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return render([])
        except OSError as exc:
            raise DriverError(f"cannot read the simulated site's state {self.path}: {exc.strerror}") from None

    def _bad(self, why: str) -> DriverError:
        return DriverError(f"{self.path}: not a simulated site's state file ({why})")

    def _parse(self, raw: bytes) -> dict[str, Cluster]:
        try:
            state = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._bad(str(exc)) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise self._bad(f"format is not {FORMAT}")
        clusters = state.get("clusters")
        if not isinstance(clusters, dict) or not all(isinstance(c, dict) for c in clusters.values()):
            raise self._bad("no clusters table")
        return clusters

    def clusters(self) -> dict[str, Cluster]:
        """Every cluster's entry as it is now (no lock: the file is replaced whole)."""
        return self._parse(self._raw())

    def cluster(self, name: str) -> Cluster | None:
        """One cluster's entry, read without parsing the others' (in the usual layout)."""
        raw = self._raw()
        if not raw.startswith(HEADER):
            return self._parse(raw).get(name)
        key = b"\n" + _key(name) + b":"
        start = raw.find(key)
        if start < 0:
            return None
        line = raw[start + 1 : raw.find(b"\n", start + 1)].removesuffix(b",")
        try:
            found = _value(name, line)
        except ValueError as exc:
            raise self._bad(f"cluster {name}: {exc}") from None
        if not isinstance(found, dict):
            raise self._bad(f"cluster {name} is not an object")
        return found

    @contextlib.contextmanager
    def update(self) -> Iterator[Change]:
        """The state to change in the block, written back at its end if it changed (and the
        block did not raise) — all under the lock, so concurrent updates lose nothing."""
        with file_lock(self.lock_path):
            raw = self._raw()
            lines = split_lines(raw)
            if lines is None:
                lines = {name: encode_line(name, c) for name, c in self._parse(raw).items()}
            change = Change(lines)
            yield change
            if change.changed:
                write_atomically(self.path, change.render())

    # -- documents -------------------------------------------------------------------------
    def documents_path(self, cluster: str) -> Path:
        return self.documents_dir / f"{names.cluster_name(cluster)}.json"  # never a path of its own

    def write_documents(self, cluster: str, documents: Mapping[str, Mapping[str, str]]) -> None:
        data = {n: dict(t) for n, t in documents.items()}
        write_atomically(self.documents_path(cluster), json.dumps(data, indent=1).encode())

    def read_documents(self, cluster: str) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.documents_path(cluster).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot read {self.documents_path(cluster)}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def remove_documents(self, cluster: str) -> bool:
        """Whether there was a documents file to remove."""
        try:
            self.documents_path(cluster).unlink()
        except FileNotFoundError:
            return False
        return True
