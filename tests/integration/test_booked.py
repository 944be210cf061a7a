"""LibreBooking as PCC's calendar, against the real LibreBooking (Debian's PHP and MariaDB,
started by the test without systemd) and `pcc serve` with its connector over the session's
pool and SSH sites. A LibreBooking user books PCC's resource through LibreBooking's API;
the cluster boots, its Status reads Running with the login command, the user logs in with
the key from their LibreBooking profile; moved ends move the watch job's end; a booking
that ends reads Stopped; a deleted one is torn down; one over capacity is Rejected with the
next window; a connector killed mid-poll or two polls at once create nothing twice; and
with LibreBooking down for a while the connector catches up. Two VMs boot (at once)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcc.controller.model import State
from pcc.controller.service import Actor
from pcc.controller.settings import Settings
from pcc.controller.store import Store
from pcc.dev.controller_env import VENV_BIN, Controller, Served, serve_controller, ssh_login
from pcc.dev.librebooking import LibreBooking, start_librebooking

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]

ROOT = Actor("root", admin=True)
POLL_S = 2


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class LbUser:
    """A person using LibreBooking's web-services API (what its web pages do for them)."""

    def __init__(self, lb: LibreBooking, name: str, password: str) -> None:
        self.http = httpx.Client(base_url=lb.api, timeout=30)
        self.name, self.password = name, password
        self.headers: dict[str, str] = {}
        self.id = ""
        self.sign_in()

    def sign_in(self) -> None:
        doc = self.http.post(
            "/Authentication/Authenticate", json={"username": self.name, "password": self.password}
        ).json()
        assert doc["isAuthenticated"], doc
        self.id = str(doc["userId"])
        self.headers = {"X-Booked-SessionToken": doc["sessionToken"], "X-Booked-UserId": self.id}

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        reply = self.http.request(method, path, headers=self.headers, **kw)
        if reply.status_code == 401:  # a session lapsed while LibreBooking was down
            self.sign_in()
            reply = self.http.request(method, path, headers=self.headers, **kw)
        return reply

    def attribute_ids(self, category: int) -> dict[str, str]:
        reply = self.call("GET", f"/Attributes/Category/{category}").json()
        return {a["label"]: str(a["id"]) for a in reply["attributes"]}

    def book(self, resource: str, start: int, end: int, **values: str) -> str:
        ids = self.attribute_ids(1)
        body = {
            "resourceId": resource,
            "startDateTime": stamp(start),
            "endDateTime": stamp(end),
            "title": "my cluster",
            "description": "",
            "userId": self.id,
            "customAttributes": [{"attributeId": ids[k], "attributeValue": v} for k, v in values.items()],
            "termsAccepted": True,
            "allowParticipation": False,
        }
        reply = self.call("POST", "/Reservations/", json=body)
        assert reply.status_code == 201, reply.text
        return str(reply.json()["referenceNumber"])

    def booking(self, ref: str) -> dict[str, Any]:
        reply = self.call("GET", f"/Reservations/{ref}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def status(self, ref: str) -> str:
        attrs = {a["label"]: a["value"] for a in self.booking(ref)["customAttributes"]}
        return str(attrs.get("Status") or "")

    def move_end(self, ref: str, end: int, drop: str = "") -> None:
        """Change the end as the booking form does: the whole booking sent back (but for the
        attribute labelled ``drop``)."""
        doc = self.booking(ref)
        body = {
            "resourceId": doc["resourceId"],
            "startDateTime": doc["startDate"],
            "endDateTime": stamp(end),
            "title": doc["title"],
            "description": doc["description"],
            "userId": doc["owner"]["userId"],
            "customAttributes": [
                {"attributeId": a["id"], "attributeValue": a["value"]}
                for a in doc["customAttributes"]
                if a["value"] and a["label"] != drop
            ],
            "termsAccepted": True,
            "allowParticipation": False,
        }
        reply = self.call("POST", f"/Reservations/{ref}", params={"updateScope": "full"}, json=body)
        assert reply.status_code == 200, reply.text

    def delete(self, ref: str) -> None:
        reply = self.call("DELETE", f"/Reservations/{ref}")
        assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def librebooking(controller: Controller) -> Iterator[LibreBooking]:
    root = Path(tempfile.mkdtemp(prefix="librebooking-", dir=controller.state.parent))
    started = time.monotonic()
    lb = start_librebooking(root)
    print(f"\nLibreBooking set up and answering in {time.monotonic() - started:.1f} s")
    try:
        yield lb
    finally:
        lb.stop()


@pytest.fixture(scope="module")
def booked(controller: Controller, librebooking: LibreBooking) -> Iterator[Controller]:
    """The module's controller with ``[booked]`` in its pcc.toml (the password in a file)."""
    password = controller.state / "booked.password"
    password.write_text(librebooking.admin[1] + "\n")
    password.chmod(0o600)
    original = controller.config.read_text()
    controller.config.write_text(
        original + f'\n[booked]\nurl = "{librebooking.url}"\nuser = "{librebooking.admin[0]}"\n'
        f'password_file = "{password}"\npoll_seconds = {POLL_S}\nlookahead_days = 2\n'
    )
    controller.settings = Settings.from_env(config=controller.config)
    controller.probe()  # the images LibreBooking's VC Name offers come from the probes
    yield controller
    controller.config.write_text(original)


def with_dag_logs(ctl: Controller, served: Served) -> Callable[[], str]:
    """`pcc serve`'s log and the tails of the DAG nodes' own logs, for a failing wait."""

    def text() -> str:
        parts = [served.log()]
        for path in sorted(ctl.settings.dag_dir.glob("*/*.err")) + sorted(
            ctl.settings.dag_dir.glob("*/*.out")
        ):
            tail = path.read_text(errors="replace")[-1500:]
            if tail.strip():
                parts.append(f"--- {path} ---\n{tail}")
        return "\n".join(parts)

    return text


def pcc(ctl: Controller, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "pcc"), "--config", str(ctl.config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str], every: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{log()}")


def next_minute(after_s: float) -> int:
    """LibreBooking's times sit on its layout's blocks (one minute here)."""
    return int((time.time() + after_s) // 60 + 1) * 60


def linked(ctl: Controller, ref: str) -> str | None:
    store = Store(ctl.settings.database)
    link = store.booked_link(ref)
    return link.reservation if link else None


def test_pcc_booked_setup_is_idempotent_and_describes_the_site(
    booked: Controller, librebooking: LibreBooking
) -> None:
    first = pcc(booked, "booked", "setup", "-o", "json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert {"CPUs", "Memory (GB)", "ENT-enabled", "VC Name", "Status", "SSH public key"} <= set(
        made["attributes_created"]
    )
    assert sorted(made["resources_created"]) == sorted(s.name for s in booked.settings.sites)
    again = pcc(booked, "booked", "setup")
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    admin = LbUser(librebooking, *librebooking.admin)
    resources = {r["name"]: r for r in admin.call("GET", "/Resources/").json()["resources"]}
    values = {a["label"]: a["value"] for a in resources["a"]["customAttributes"]}
    assert values["Site hostname"] == "127.0.0.2" and values["Available CPUs"] == "4"
    assert values["Site status"] == "up" and values["Username"] == "pcc-a" and values["Pragma_boot version"]
    assert values["Temporary directory"].startswith("/")
    vc = next(
        a for a in admin.call("GET", "/Attributes/Category/1").json()["attributes"] if a["label"] == "VC Name"
    )
    assert "tiny" in vc["possibleValues"]


def test_a_booking_in_librebooking_boots_reads_running_follows_its_end_and_stops(
    booked: Controller, librebooking: LibreBooking
) -> None:
    assert pcc(booked, "booked", "setup").returncode == 0
    admin = LbUser(librebooking, *librebooking.admin)
    user = LbUser(librebooking, *librebooking.user)
    # The scientist's key lives in their LibreBooking profile (the "SSH public key" attribute).
    profile = admin.call("GET", f"/Users/{user.id}").json()
    key_id = admin.attribute_ids(2)["SSH public key"]
    update = {
        "firstName": profile["firstName"],
        "lastName": profile["lastName"],
        "emailAddress": profile["emailAddress"],
        "userName": profile["userName"],
        "timezone": profile["timezone"],
        "customAttributes": [{"attributeId": key_id, "attributeValue": booked.user_public_key().strip()}],
    }
    assert admin.call("POST", f"/Users/{user.id}", json=update).status_code == 200
    site_a = next(
        r["resourceId"] for r in admin.call("GET", "/Resources/").json()["resources"] if r["name"] == "a"
    )

    served = serve_controller(booked)
    logs = with_dag_logs(booked, served)
    try:
        start = next_minute(20)
        booked_at, booked_wall = time.monotonic(), time.time()
        first = user.book(site_a, start, start + 1800, **{"CPUs": "2", "VC Name": "tiny"})
        second = user.book(site_a, start, start + 1800, **{"CPUs": "2", "VC Name": "tiny"})
        wait_for(
            "both to be reservations",
            lambda: linked(booked, first) and linked(booked, second),
            60,
            logs,
        )
        # 3 CPUs: more than is left while both run, and than either leaves when it goes.
        full = user.book(site_a, start, start + 1800, **{"CPUs": "3", "VC Name": "tiny"})
        rejected = wait_for(
            "the third booking to read Rejected",
            lambda: user.status(full).startswith("Rejected"),
            60,
            logs,
        )
        assert rejected
        text = user.status(full)
        assert "site a" in text and "the next window that fits:" in text, text
        running = {}
        for ref in (first, second):
            running[ref] = wait_for(
                f"{ref} to read Running",
                lambda r=ref: (s := user.status(r)).startswith("Running") and s,
                400,
                logs,
            )
        took = time.monotonic() - booked_at
        print(f"\nbooked -> Running: {took:.0f} s (the start {start - booked_wall:.0f} s after booking)")
        login = re.fullmatch(r"Running: ssh -p (\d+) root@([0-9.]+)", running[first])
        assert login, running[first]
        assert (
            ssh_login(booked.user_key, login.group(2), int(login.group(1)), "hostname")
            == f"{linked(booked, first)}-frontend"
        )
        rid_first, rid_second = linked(booked, first), linked(booked, second)
        assert rid_first and rid_second and rid_first != rid_second
        res = booked.service.reservation(ROOT, rid_first)
        assert res.owner == "user" and res.begin == start and res.end == start + 1800

        # A later end there: the reservation and the running watch job follow.
        user.move_end(second, start + 2400)
        wait_for(
            "the later end to reach the reservation",
            lambda: booked.service.reservation(ROOT, rid_second).end == start + 2400,
            30,
            logs,
        )
        wait_for(
            "the watch job's PccEnd to follow",
            lambda: (
                str(start + 2400)
                in booked.condor_q(
                    "-constraint",
                    f'PccReservation == "{rid_second}" && PccEnd =!= undefined',
                    "-af",
                    "PccEnd",
                )
            ),
            60,
            logs,
        )
        # Deleted there: torn down here.
        user.delete(second)
        wait_for(
            "the deleted booking's cluster to stop",
            lambda: booked.service.reservation(ROOT, rid_second).state is State.STOPPED,
            180,
            logs,
        )
        assert user.call("GET", f"/Reservations/{second}").status_code == 404  # LibreBooking forgets it

        # An earlier end: the cluster stops then, and the booking reads Stopped.
        end = next_minute(30)
        user.move_end(first, end)
        wait_for(
            "the earlier end to reach the reservation",
            lambda: booked.service.reservation(ROOT, rid_first).end == end,
            30,
            logs,
        )
        wait_for("the ended booking to read Stopped", lambda: user.status(first) == "Stopped", 240, logs)
        assert booked.service.reservation(ROOT, rid_first).state is State.STOPPED
        # The booking over capacity still reads why, and nothing was made for it.
        assert linked(booked, full) is None and user.status(full).startswith("Rejected: site a is short")
    finally:
        served.stop()


def test_a_connector_killed_mid_poll_or_polling_twice_at_once_reserves_once(
    booked: Controller, librebooking: LibreBooking
) -> None:
    assert pcc(booked, "booked", "setup").returncode == 0
    user = LbUser(librebooking, *librebooking.user)
    admin = LbUser(librebooking, *librebooking.admin)
    site_b = next(
        r["resourceId"] for r in admin.call("GET", "/Resources/").json()["resources"] if r["name"] == "b"
    )
    tomorrow = next_minute(86_400)
    ref = user.book(site_b, tomorrow, tomorrow + 600, **{"CPUs": "1", "VC Name": "tiny"})
    served = serve_controller(booked)
    try:
        # Killed (SIGKILL) the moment the reservation is made, before its Status is written.
        wait_for(
            "the connector to make the reservation",
            lambda: any(f"booked {ref}: reservation" in line for line in served.lines),
            60,
            served.log,
            every=0.05,
        )
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait()
    finally:
        served.stop()
    again = serve_controller(booked)
    try:
        wait_for(
            "the Status after the restart", lambda: user.status(ref).startswith("Scheduled"), 60, again.log
        )
    finally:
        again.stop()
    mine = [r for r in booked.service.reservations(ROOT) if r.begin == tomorrow]
    assert len(mine) == 1 and linked(booked, ref) == mine[0].id

    # Two polls at once (two `pcc booked sync`) on a new booking: one reservation.
    other = user.book(site_b, tomorrow + 3600, tomorrow + 4200, **{"CPUs": "1", "VC Name": "tiny"})
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(pcc(booked, "booked", "sync"))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    made = [r for r in booked.service.reservations(ROOT) if r.begin == tomorrow + 3600]
    assert len(made) == 1 and linked(booked, other) == made[0].id
    assert (
        len(booked.condor_q("-constraint", f'JobBatchName == "{made[0].id}"', "-af", "ClusterId").split())
        <= 1
    )


def test_librebooking_down_for_a_while_then_back_the_connector_catches_up(
    booked: Controller, librebooking: LibreBooking
) -> None:
    assert pcc(booked, "booked", "setup").returncode == 0
    user = LbUser(librebooking, *librebooking.user)
    admin = LbUser(librebooking, *librebooking.admin)
    site_b = next(
        r["resourceId"] for r in admin.call("GET", "/Resources/").json()["resources"] if r["name"] == "b"
    )
    later = next_minute(2 * 3600)
    ref = user.book(site_b, later, later + 600, **{"CPUs": "1", "VC Name": "tiny"})
    served = serve_controller(booked)
    try:
        wait_for(
            "the booking to read Scheduled", lambda: user.status(ref).startswith("Scheduled"), 60, served.log
        )
        rid = linked(booked, ref)
        assert rid
        # LibreBooking lets the owner clear the Status (a full update without it): PCC reads
        # the live bookings' Status back every few polls and writes its own again.
        written = user.status(ref)
        user.move_end(ref, later + 600, drop="Status")
        assert user.status(ref) == ""
        wait_for("PCC to write its Status again", lambda: user.status(ref) == written, 60, served.log)
        librebooking.stop_web()
        seen = len(served.lines)
        wait_for(
            "a failed poll to be logged",
            lambda: any("LibreBooking cannot be read" in line for line in served.lines[seen:]),
            30,
            served.log,
        )
        # Meanwhile PCC goes on: the reservation is cancelled here, by its owner.
        booked.service.cancel(Actor("user"), rid)
        time.sleep(3 * POLL_S)
        assert served.proc.poll() is None
        librebooking.start_web()
        wait_for("the Status to catch up", lambda: user.status(ref) == "Stopped", 60, served.log)
        assert Store(booked.settings.database).booked_link(ref).status == "Stopped"  # type: ignore[union-attr]
    finally:
        served.stop()
    assert os.path.exists(booked.settings.database)
