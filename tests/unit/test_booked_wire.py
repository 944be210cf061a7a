"""Reading LibreBooking's documents defensively, and the connector's pure decisions: which
resource is which site, what a booking asks for, which attributes are missing, what a
resource should show, and the full-update bodies that keep a booking as it is. The
documents below have the shapes the real LibreBooking answers with (ids as strings,
``+0000`` times, ``resources`` keyed by id, ``value`` null when unset)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcc.booked import plan
from pcc.booked.client import BookedClient
from pcc.booked.config import AttributeNames, BookedConfig
from pcc.booked.connector import resource_body, update_body
from pcc.booked.wire import RESERVATION, RESOURCE, SELECT, AttributeDef, BookedError, Detail, Listed, Resource
from pcc.common.errors import UserInputError
from pcc.controller.settings import SiteEntry
from pcc.controller.store import SiteRecord

NAMES = AttributeNames()


def attr(i: int, label: str, value: str | None) -> dict[str, Any]:
    return {"links": [], "message": None, "id": str(i), "label": label, "value": value}


def detail_doc(**over: Any) -> dict[str, Any]:
    doc = {
        "referenceNumber": "6b0f9d9bcb44f792852583",
        "startDate": "2026-12-02T04:26:00+0000",
        "endDate": "2026-12-02T04:36:00+0000",
        "title": "my vc",
        "description": "",
        "resourceId": "3",
        "owner": {"userId": "1", "firstName": "User", "lastName": "User", "emailAddress": "user@example.com"},
        "participants": [],
        "invitees": [],
        "customAttributes": [
            attr(1, "Test Number", None),
            attr(5, "CPUs", "2"),
            attr(6, "Memory (GB)", None),
            attr(7, "ENT-enabled", None),
            attr(8, "VC Name", "tiny"),
            attr(9, "Status", "Requested"),
        ],
        "resources": {"3": {"id": "3", "name": "a"}},
        "startReminder": None,
        "allowParticipation": False,
    }
    doc.update(over)
    return doc


def test_a_booking_reads_with_its_resources_times_owner_and_attributes() -> None:
    d = Detail.read(detail_doc())
    assert (d.reference, d.resource_ids, d.owner_id) == ("6b0f9d9bcb44f792852583", ("3",), "1")
    assert d.start == 1796185560 and d.end - d.start == 600
    assert d.value("CPUs") == "2" and d.value("Memory (GB)") == "" and d.value("missing") == ""
    listed = Listed.read(
        {"referenceNumber": "abc", "startDate": "2026-12-02T05:26:00+0100", "endDate": "2026-12-02T04:36:00Z"}
        | {"resourceId": "3", "userId": 1}
    )
    assert listed.start == d.start and listed.user_id == "1"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"referenceNumber": "x; rm -rf /"}, "not a reference number"),
        ({"startDate": "tomorrow"}, "not an ISO 8601 time"),
        ({"startDate": "2026-12-02T04:26:00"}, "has no time zone"),
        ({"owner": None}, "owner: expected a JSON object"),
        ({"resources": {"3": {"id": "three"}}}, "'id' is not an id"),
        ({"customAttributes": "none"}, "'customAttributes' is not a list"),
        ({"title": "x" * 30_000}, "longer than"),
        ({"endDate": True}, "'endDate' is missing or not text"),
    ],
)
def test_garbage_from_librebooking_is_a_booked_error_naming_the_field(
    over: dict[str, Any], message: str
) -> None:
    with pytest.raises(BookedError, match=message):
        Detail.read(detail_doc(**over))


def config(sites_by: str = "name") -> BookedConfig:
    return BookedConfig("http://127.0.0.1:1", "pcc", "pw", sites_by=sites_by)


def resource(rid: str, name: str, **values: str | None) -> Resource:
    attrs = [attr(10 + i, label, value) for i, (label, value) in enumerate(values.items())]
    return Resource.read(
        {"resourceId": rid, "name": name, "customAttributes": attrs, "scheduleId": "1", "links": []}
    )


def test_resources_map_to_sites_by_name_or_by_attribute() -> None:
    resources = [resource("3", "a"), resource("4", "Room", **{"PCC site": "b"}), resource("5", "zzz")]
    assert plan.sites_of(resources, config(), ["a", "b"]) == {"3": "a"}
    assert plan.sites_of(resources, config("attribute"), ["a", "b"]) == {"4": "b"}


def test_a_booking_asks_for_what_its_form_says_or_says_what_is_wrong() -> None:
    ask = plan.ask_of(Detail.read(detail_doc()), {"3": "a"}, NAMES)
    assert (ask.image, [(s.site, s.cpus, s.memory_gb) for s in ask.sites], ask.ent) == (
        "tiny",
        [("a", 2, 1.0)],
        False,
    )
    bad = [
        ([attr(5, "CPUs", "two"), attr(8, "VC Name", "tiny")], "CPUs must be a whole number"),
        ([attr(5, "CPUs", "2")], "choose a VC Name"),
        ([attr(5, "CPUs", "0"), attr(8, "VC Name", "tiny")], "must be more than 0"),
        (
            [attr(5, "CPUs", "2"), attr(6, "Memory (GB)", "nan"), attr(8, "VC Name", "tiny")],
            "must be more than 0",
        ),
    ]
    for attrs, message in bad:
        with pytest.raises(UserInputError, match=message):
            plan.ask_of(Detail.read(detail_doc(customAttributes=attrs)), {"3": "a"}, NAMES)
    with pytest.raises(UserInputError, match="none of the booked resources is a PCC site"):
        plan.ask_of(Detail.read(detail_doc()), {"4": "b"}, NAMES)


def test_only_missing_attributes_are_created_and_a_select_follows_the_images() -> None:
    wanted = plan.wanted_attributes(NAMES, ["tiny", "big"], by_attribute=False)
    assert not any(w.label == "PCC site" for w in wanted)
    existing = [
        AttributeDef("5", "cpus", RESERVATION, 1, (), False),  # labels match whatever their case
        AttributeDef("8", "VC Name", RESERVATION, SELECT, ("tiny",), False),
        AttributeDef("19", "ENT-enabled", RESOURCE, 4, (), True),
    ]
    create, update = plan.attribute_changes(existing, wanted)
    assert "CPUs" not in [w.label for w in create] and ("ENT-enabled", RESERVATION) in [
        (w.label, w.category) for w in create
    ]
    assert [(a.id, w.possible_values) for a, w in update] == [("8", ("big", "tiny"))]
    status = next(w for w in wanted if w.label == "Status")
    assert status.admin_only and status.category == RESERVATION


def record(**over: Any) -> SiteRecord:
    entry = SiteEntry("a", "127.0.0.2", 2222, "pcc-a", Path("k"), Path("h"), 4, 8.0, "libvirt", True)
    fields: dict[str, Any] = {"health": "up", "pragma_version": "0.3.0", "staging_dir": "/var/tmp/pragma"}
    fields.update(over)
    return SiteRecord(entry, **fields)


def test_a_resource_shows_the_sites_figures_and_only_changes_are_written() -> None:
    values = plan.resource_values(record(reserved_cpus=3, reserved_memory_gb=2.5), NAMES)
    assert values["Available CPUs"] == "1" and values["Available Gb Memory"] == "5.5"
    assert (
        values["Site hostname"] == "127.0.0.2"
        and values["ENT-enabled"] == "1"
        and values["Site status"] == "up"
    )
    down = plan.resource_values(record(health="down", reason="ssh: connection refused"), NAMES)
    assert down["Site status"] == "down: ssh: connection refused"
    current = resource("3", "a", **{**values, "Available CPUs": "4"})
    assert plan.changed_values(current, values) == {"Available CPUs": "1"}
    body = resource_body(current, {"Available CPUs": "1"})
    assert "resourceId" not in body and body["name"] == "a" and body["scheduleId"] == "1"
    written = {a["attributeId"]: a["attributeValue"] for a in body["customAttributes"]}  # type: ignore[attr-defined]
    assert written["13"] == "1" and written["10"] == "0.3.0"  # the others as they were


def test_a_full_update_keeps_the_booking_but_for_the_changed_attribute() -> None:
    d = Detail.read(detail_doc())
    body = update_body(d, {"9": "Running: ssh -p 2201 root@127.0.0.2"})
    assert (body["resourceId"], body["userId"]) == ("3", "1")
    assert (body["startDateTime"], body["endDateTime"]) == (
        "2026-12-02T04:26:00+0000",
        "2026-12-02T04:36:00+0000",
    )
    attrs = {a["attributeId"]: a["attributeValue"] for a in body["customAttributes"]}  # type: ignore[attr-defined]
    # Unset attributes stay out (LibreBooking checks an empty value against their format).
    assert attrs == {"5": "2", "8": "tiny", "9": "Running: ssh -p 2201 root@127.0.0.2"}


class NotLibreBooking(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def not_librebooking(tmp_path: Path) -> Iterator[str]:
    """A real web server at the configured URL that is not LibreBooking (a wrong URL)."""
    (tmp_path / "Web" / "Services").mkdir(parents=True)
    (tmp_path / "Web" / "Services" / "index.php").write_text("<?php // not run here\n")

    def handler(*args: Any, **kw: Any) -> NotLibreBooking:
        return NotLibreBooking(*args, directory=str(tmp_path), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_server_that_is_not_librebooking_or_none_at_all_is_a_booked_error(not_librebooking: str) -> None:
    wrong = BookedClient(BookedConfig(not_librebooking, "pcc", "pw", timeout_s=5))
    with wrong, pytest.raises(BookedError, match="answered with status 501"):
        wrong.resources()
    nobody = BookedClient(BookedConfig("http://127.0.0.1:1", "pcc", "pw", timeout_s=5))
    with nobody, pytest.raises(BookedError, match="ConnectError"):
        nobody.resources()
