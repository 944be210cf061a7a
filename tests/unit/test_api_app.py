"""The REST API over a real store (no pool, no site): authentication, who sees what, the
reservation document's round trip, the calendar's answers, errors and the published docs.
The sites' catalogs are seeded as the probes would leave them."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi.testclient import TestClient

from pcc.api.app import WORKER_THREADS, create_app
from pcc.common.timefmt import iso, parse_time
from pcc.controller.service import Actor, Service
from pcc.controller.settings import Settings, SiteEntry
from pcc.controller.store import Store

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
ROOT = Actor("root", admin=True)
HOUR = 3600


def site(name: str, cpus: int = 4, memory_gb: float = 2.0) -> SiteEntry:
    return SiteEntry(name, "127.0.0.9", 22, "pragma", Path("id"), Path("known_hosts"), cpus, memory_gb)


@dataclass
class Seeded:
    """A store as `pcc serve` would have it after its first probes: sites a and b (4 CPUs,
    2 GB, image ``tiny``), site c never probed; users alice, bob and the admin ``boss``
    with a token each."""

    settings: Settings
    service: Service
    tokens: dict[str, str]


def seed(state: Path) -> Seeded:
    settings = Settings(state_dir=state, sites=(site("a"), site("b"), site("c")))
    service = Service(settings, Store(settings.database))
    for name in ("a", "b"):
        service.store.set_site_images(name, ["tiny", "big"])
    tokens = {}
    for name, admin in (("alice", False), ("bob", False), ("boss", True)):
        service.add_user(ROOT, name, f"{name}@example.org", KEY, admin=admin)
        tokens[name] = service.create_token(ROOT, user=name, label="seed")[0]
    return Seeded(settings, service, tokens)


class Api:
    """A client of the app with a user's token in every call (``as_`` switches user)."""

    def __init__(self, client: TestClient, seeded: Seeded, user: str = "alice") -> None:
        self.client = client
        self.seeded = seeded
        self.user = user

    def as_(self, user: str) -> Api:
        return Api(self.client, self.seeded, user)

    @property
    def service(self) -> Service:
        return self.seeded.service

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.seeded.tokens[self.user]}", **kwargs.pop("headers", {})}
        return self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any) -> httpx.Response:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> httpx.Response:
        return self.request("DELETE", path)

    def reserve(self, begin: int, end: int, *sites: str, image: str = "tiny") -> httpx.Response:
        """POST a reservation of ``sites`` given as ``NAME:CPUS[:MEM_GB]``."""
        allocations = []
        for text in sites:
            name, cpus, *mem = text.split(":")
            allocations.append({"site": name, "cpus": int(cpus), "memory_gb": float(mem[0]) if mem else 1.0})
        return self.post(
            "/reservations",
            {"image": image, "begin": iso(begin), "end": iso(end), "allocations": allocations},
        )

    def reserved(self, begin: int, end: int, *sites: str) -> dict[str, Any]:
        made = self.reserve(begin, end, *sites)
        assert made.status_code == 201, made.text
        return made.json()


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path)


@pytest.fixture
def api(seeded: Seeded) -> Iterator[Api]:
    with TestClient(create_app(seeded.settings, web=False)) as client:
        yield Api(client, seeded)


@pytest.fixture
def t0() -> int:
    """A whole hour a day from now: reservations there do not begin during a test."""
    return (int(time.time()) // HOUR + 24) * HOUR


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["type"], str) and body["error"]["message"]
    return body["error"]


# -- authentication ------------------------------------------------------------------------------
def test_no_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    for path in ("/reservations", "/sites", "/users/me", "/tokens"):
        answer = api.client.get("/api/v1" + path)
        assert error_of(answer, 401)["type"] == "Unauthenticated"
        assert answer.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_or_another_scheme_is_401(api: Api) -> None:
    for header in ("Bearer pcc_" + "x" * 43, "Basic YWxpY2U6c2VjcmV0", "Bearer"):
        answer = api.client.get("/api/v1/users/me", headers={"Authorization": header})
        assert error_of(answer, 401)["type"] == "Unauthenticated"
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_token_names_its_user(api: Api) -> None:
    me = api.get("/users/me")
    assert me.status_code == 200
    assert me.json() == {"name": "alice", "email": "alice@example.org", "ssh_key": KEY, "role": "user"}


def test_an_expired_token_is_401(api: Api) -> None:
    token, _info = api.service.create_token(ROOT, user="alice", expires_in=5, now=time.time() - 10)
    answer = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    error_of(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_token_revoked_through_the_api_is_401_from_then_on(api: Api) -> None:
    made = api.post("/tokens", {"label": "ci", "expires_in": "1h"})
    assert made.status_code == 201, made.text
    new = made.json()
    headers = {"Authorization": f"Bearer {new['token']}"}
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 200
    revoked = api.delete(f"/tokens/{new['id']}")
    assert revoked.status_code == 200 and revoked.json()["valid"] is False
    assert "token" not in revoked.json()
    error_of(api.client.get("/api/v1/users/me", headers=headers), 401)


def test_a_token_listing_never_shows_tokens(api: Api) -> None:
    api.post("/tokens", {"label": "second"})
    listed = api.get("/tokens").json()
    assert [t["label"] for t in listed] == ["seed", "second"]
    assert all("token" not in t and t["user"] == "alice" and t["valid"] for t in listed)


# -- who may do what -----------------------------------------------------------------------------
def test_someone_elses_reservation_is_404_to_read_change_cancel_and_follow(api: Api, t0: int) -> None:
    bobs = api.as_("bob").reserved(t0, t0 + HOUR, "a:1")
    path = f"/reservations/{bobs['id']}"
    later = iso(t0 + 2 * HOUR)
    for answer in (
        api.get(path),
        api.patch(path, {"end": later}),
        api.delete(path),
        api.get(path + "/events"),
    ):
        assert error_of(answer, 404)["type"] == "NotFound"
    # The same answer as for a reservation that does not exist.
    assert error_of(api.get(path), 404)["message"] == f"no reservation {bobs['id']!r}"
    assert error_of(api.get("/reservations/r99999"), 404)["message"] == "no reservation 'r99999'"
    still = api.as_("bob").get(path).json()
    assert still["cancelled"] is False and still["end"] == iso(t0 + HOUR)
    assert api.get("/reservations").json() == []


def test_an_admin_sees_and_cancels_everyones_reservations(api: Api, t0: int) -> None:
    bobs = api.as_("bob").reserved(t0, t0 + HOUR, "a:1")
    boss = api.as_("boss")
    assert [r["id"] for r in boss.get("/reservations").json()] == [bobs["id"]]
    assert boss.get("/reservations", params={"mine": "true"}).json() == []
    cancelled = boss.delete(f"/reservations/{bobs['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert api.as_("bob").get(f"/reservations/{bobs['id']}").json()["state"] == "cancelled"


def test_a_listing_shows_at_once_what_another_process_changed(api: Api, t0: int) -> None:
    made = api.reserved(t0, t0 + HOUR, "a:1")
    assert [r["state"] for r in api.get("/reservations").json()] == ["requested"]
    assert api.get("/reservations").json() == api.get("/reservations").json()  # kept, the same
    other = sqlite3.connect(api.seeded.settings.database, isolation_level=None)  # the loop, the CLI
    other.execute("update allocations set state = 'booting' where reservation = ?", [made["id"]])
    other.close()
    assert [r["state"] for r in api.get("/reservations").json()] == ["booting"]
    assert [r["state"] for r in api.get("/reservations", params={"state": "booting"}).json()] == ["booting"]
    assert api.get("/reservations", params={"state": "requested"}).json() == []
    assert api.as_("bob").get("/reservations").json() == []  # each user's own listing


def test_a_user_cannot_list_users_nor_make_a_token_for_another(api: Api) -> None:
    assert error_of(api.get("/users"), 403)["type"] == "Forbidden"
    assert error_of(api.post("/tokens", {"user": "bob"}), 403)["type"] == "Forbidden"
    assert error_of(api.post("/users", {"name": "mallory"}), 403)["type"] == "Forbidden"
    assert error_of(api.patch("/users/alice", {"role": "admin"}), 403)["type"] == "Forbidden"
    assert error_of(api.get("/users/bob"), 404)["type"] == "NotFound"


def test_an_admin_lists_users_and_makes_a_token_for_another(api: Api) -> None:
    boss = api.as_("boss")
    assert [u["name"] for u in boss.get("/users").json()] == ["alice", "bob", "boss"]
    made = boss.post("/tokens", {"user": "bob", "label": "for bob"})
    assert made.status_code == 201 and made.json()["user"] == "bob"
    as_bob = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert as_bob.json()["name"] == "bob"


def test_an_admin_adds_a_user_who_can_then_log_in(api: Api) -> None:
    added = api.as_("boss").post("/users", {"name": "dave", "ssh_key": KEY, "password": "long enough"})
    assert added.status_code == 201, added.text
    assert added.json() == {"name": "dave", "email": "", "ssh_key": KEY, "role": "user"}
    assert api.service.login("dave", "long enough")[1].name == "dave"


def test_a_password_shorter_than_8_characters_is_400(api: Api) -> None:
    assert "at least 8" in error_of(api.patch("/users/alice", {"password": "short"}), 400)["message"]
    assert api.patch("/users/alice", {"password": "12345678"}).status_code == 200


# -- the reservation document --------------------------------------------------------------------
def test_post_takes_back_the_document_get_returns(api: Api, t0: int) -> None:
    first = api.reserved(t0, t0 + HOUR, "a:2:0.5", "b:1")
    doc = api.get(f"/reservations/{first['id']}").json()
    assert doc == first
    # Server-owned fields sent back with made-up values are ignored.
    doc |= {"id": "r77777", "state": "running", "cancelled": True, "begin": iso(t0 + 2 * HOUR)}
    doc["end"] = iso(t0 + 3 * HOUR)
    doc["allocations"][0] |= {"state": "running", "public_address": "203.0.113.9", "nodes_up": 9}
    again = api.post("/reservations", doc)
    assert again.status_code == 201, again.text
    second = again.json()
    assert again.headers["location"] == f"/api/v1/reservations/{second['id']}"
    assert second["id"] not in (first["id"], "r77777")
    assert (second["begin"], second["end"]) == (iso(t0 + 2 * HOUR), iso(t0 + 3 * HOUR))
    assert second["state"] == "requested" and second["cancelled"] is False
    # The same shape: only the id and the times differ.
    same = {k: v for k, v in second.items() if k not in ("id", "begin", "end")}
    assert same == {k: v for k, v in first.items() if k not in ("id", "begin", "end")}


def test_post_with_a_duration_and_now(api: Api) -> None:
    before = int(time.time())
    made = api.post(
        "/reservations",
        {"image": "tiny", "begin": "now", "duration": "90m", "allocations": [{"site": "a", "cpus": 1}]},
    )
    assert made.status_code == 201, made.text
    begin, end = parse_time(made.json()["begin"]), parse_time(made.json()["end"])
    assert before <= begin <= time.time() and end - begin == 90 * 60


def test_end_and_duration_are_one_or_the_other(api: Api, t0: int) -> None:
    base = {"image": "tiny", "begin": iso(t0), "allocations": [{"site": "a", "cpus": 1}]}
    error_of(api.post("/reservations", base), 400)
    error_of(api.post("/reservations", base | {"end": iso(t0 + HOUR), "duration": 60}), 400)


def test_a_user_cannot_reserve_for_another_but_an_admin_can(api: Api, t0: int) -> None:
    doc = {
        "image": "tiny",
        "begin": iso(t0),
        "end": iso(t0 + HOUR),
        "owner": "bob",
        "allocations": [{"site": "a", "cpus": 1}],
    }
    error_of(api.post("/reservations", doc), 403)
    made = api.as_("boss").post("/reservations", doc)
    assert made.status_code == 201 and made.json()["owner"] == "bob"


def test_patch_shortens_and_extends_the_end(api: Api, t0: int) -> None:
    res = api.reserved(t0, t0 + 2 * HOUR, "a:2")
    path = f"/reservations/{res['id']}"
    shorter = api.patch(path, {"end": iso(t0 + HOUR)})
    assert shorter.status_code == 200 and shorter.json()["end"] == iso(t0 + HOUR)
    # The whole document may be sent back; only its end counts.
    doc = api.get(path).json() | {"end": iso(t0 + 3 * HOUR), "title": "ignored", "begin": iso(t0 + 60)}
    longer = api.patch(path, doc)
    assert longer.status_code == 200, longer.text
    assert api.get(path).json() == res | {"end": iso(t0 + 3 * HOUR)}


def test_an_extension_over_capacity_is_409_saying_what_collides(api: Api, t0: int) -> None:
    res = api.reserved(t0, t0 + HOUR, "a:2")
    api.as_("bob").reserved(t0 + HOUR, t0 + 2 * HOUR, "a:3")
    answer = api.patch(f"/reservations/{res['id']}", {"end": iso(t0 + 90 * 60)})
    error = error_of(answer, 409)
    assert error["type"] == "CapacityError"
    assert "a" in error["reason"] and error["reason"] == error["message"]
    assert api.get(f"/reservations/{res['id']}").json()["end"] == iso(t0 + HOUR)


def test_over_capacity_is_409_with_the_next_window_which_post_then_accepts(api: Api, t0: int) -> None:
    api.as_("bob").reserved(t0, t0 + 2 * HOUR, "b:4")
    answer = api.reserve(t0 + HOUR, t0 + 2 * HOUR, "a:1", "b:2")
    error = error_of(answer, 409)
    assert error["type"] == "CapacityError" and "b" in error["reason"]
    window = error["next_window"]
    assert window == {"begin": iso(t0 + 2 * HOUR), "end": iso(t0 + 3 * HOUR)}
    made = api.reserve(parse_time(window["begin"]), parse_time(window["end"]), "a:1", "b:2")
    assert made.status_code == 201, made.text


def test_cancel_is_once(api: Api, t0: int) -> None:
    res = api.reserved(t0, t0 + HOUR, "a:1")
    path = f"/reservations/{res['id']}"
    cancelled = api.delete(path)
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled"] is True and cancelled.json()["state"] == "cancelled"
    assert error_of(api.delete(path), 409)["type"] == "Conflict"
    events = api.get(path + "/events").json()
    assert [(e["site"], e["from"], e["to"]) for e in events] == [
        ("a", "", "requested"),
        ("a", "requested", "cancelled"),
    ]
    assert api.get("/reservations", params={"state": "cancelled"}).json() == [cancelled.json()]
    assert api.get("/reservations", params={"state": "requested"}).json() == []


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        ("POST", "/reservations", {"begin": "2030-01-01T10:00:00", "end": "2030-01-01T11:00:00Z"}),
        ("POST", "/reservations", {"begin": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00"}),
        ("PATCH", "/reservations/r00001", {"end": "2030-01-01T11:00:00"}),
        ("POST", "/slots/search", {"not_before": "2030-01-01T10:00:00"}),
        ("GET", "/sites/a/availability?from=2030-01-01T10:00:00", None),
        ("GET", "/sites/a/availability?to=2030-01-01T10:00:00", None),
    ],
)
def test_times_without_a_zone_are_422(
    api: Api, t0: int, method: str, path: str, doc: dict[str, Any] | None
) -> None:
    api.reserved(t0, t0 + HOUR, "a:1")
    if path == "/reservations":
        doc = {"image": "tiny", "allocations": [{"site": "a", "cpus": 1}], **(doc or {})}
    elif path == "/slots/search":
        doc = {"sites": [{"site": "a", "cpus": 1}], "duration": "1h", **(doc or {})}
    error = error_of(api.request(method, path, json=doc), 422)
    assert error["type"] == "ValidationError" and error["details"]


@pytest.mark.parametrize(
    ("method", "path", "doc", "status"),
    [
        ("POST", "/reservations", {"begin": "now", "duration": 10**30}, 400),
        ("POST", "/reservations", {"begin": "now", "duration": 10**12}, 400),
        ("POST", "/reservations", {"begin": "now", "duration": "9999999999d"}, 400),
        ("POST", "/reservations", {"begin": "now", "duration": "367d"}, 400),
        ("POST", "/reservations", {"begin": "2999-12-31T00:00:00Z", "duration": "1h"}, 400),
        ("POST", "/reservations", {"begin": "now", "end": "9999-12-31T23:59:59-12:00"}, 422),
        ("POST", "/reservations", {"begin": "0001-01-01T00:00:00+14:00", "duration": "1h"}, 422),
        ("PATCH", "/reservations/r00001", {"end": "9999-12-31T23:59:59Z"}, 422),
        ("PATCH", "/reservations/r00001", {"end": "2999-01-01T00:00:00Z"}, 400),
        ("POST", "/tokens", {"expires_in": 2**63}, 400),
        ("POST", "/tokens", {"expires_in": "99999999d"}, 400),
        ("DELETE", f"/tokens/{2**63}", None, 422),
        ("POST", "/slots/search", {"not_before": "9999-12-31T23:59:59Z"}, 422),
        ("GET", "/sites/a/availability?from=9999-12-31T00:00:00Z", None, 422),
        ("GET", "/sites/a/availability?from=0034-06-29T12:12:23Z", None, 422),
    ],
)
def test_times_and_spans_beyond_what_pcc_keeps_are_refused_not_crashed_on(
    api: Api, method: str, path: str, doc: dict[str, Any] | None, status: int
) -> None:
    api.post(
        "/reservations",
        {"image": "tiny", "begin": "now", "duration": "1h", "allocations": [{"site": "a", "cpus": 1}]},
    )
    if path == "/reservations":
        doc = {"image": "tiny", "allocations": [{"site": "a", "cpus": 1}], **(doc or {})}
    elif path == "/slots/search":
        doc = {"sites": [{"site": "a", "cpus": 1}], "duration": "1h", **(doc or {})}
    error_of(api.request(method, path, json=doc), status)
    assert api.get("/reservations").status_code == 200  # nothing unshowable was stored


def test_each_kind_of_error_has_its_status_and_the_one_shape(api: Api, t0: int) -> None:
    api.as_("bob").reserved(t0, t0 + HOUR, "a:4")
    unknown_image = api.reserve(t0, t0 + HOUR, "b:1", image="nope")
    assert "unknown image 'nope'" in error_of(unknown_image, 400)["message"]
    assert error_of(api.client.get("/api/v1/sites"), 401)["type"] == "Unauthenticated"
    assert error_of(api.get("/users"), 403)["type"] == "Forbidden"
    assert error_of(api.get("/sites/zz"), 404)["type"] == "NotFound"
    assert error_of(api.get("/nowhere"), 404)["type"] == "NotFound"
    assert error_of(api.reserve(t0, t0 + HOUR, "a:1"), 409)["type"] == "CapacityError"
    assert error_of(api.post("/reservations", {"image": "tiny"}), 422)["type"] == "ValidationError"
    assert error_of(api.request("POST", "/reservations", content=b"{not json"), 422)
    assert error_of(api.request("PUT", "/reservations"), 405)["type"] == "MethodNotAllowed"


def test_a_site_not_yet_probed_refuses_reservations_with_400(api: Api, t0: int) -> None:
    assert "has not reported its images" in error_of(api.reserve(t0, t0 + HOUR, "c:1"), 400)["message"]


# -- sites and the calendar ----------------------------------------------------------------------
def test_sites_show_capacity_images_and_what_is_held_now(api: Api) -> None:
    api.post(
        "/reservations",
        {"image": "tiny", "begin": "now", "duration": "1h", "allocations": [{"site": "a", "cpus": 3}]},
    )
    sites = {s["name"]: s for s in api.get("/sites").json()}
    assert sorted(sites) == ["a", "b", "c"]
    assert sites["a"]["images"] == ["big", "tiny"] and sites["c"]["images"] is None
    assert sites["a"]["capacity"] == {
        "cpus": 4,
        "memory_gb": 2.0,
        "reserved_cpus": 3,
        "reserved_memory_gb": 1.0,
    }
    assert sites["b"]["capacity"]["reserved_cpus"] == 0
    assert api.get("/sites/a").json() == sites["a"]
    images = api.get("/images").json()
    assert {"site": "c", "error": "not probed yet"} in images
    assert sorted(i["name"] for i in images if i["site"] == "b") == ["big", "tiny"]


def test_availability_is_a_step_function_of_the_bookings(api: Api, t0: int) -> None:
    api.reserved(t0, t0 + 2 * HOUR, "a:2")
    api.as_("bob").reserved(t0 + HOUR, t0 + 3 * HOUR, "a:1:0.5")
    api.reserved(t0, t0 + 9 * HOUR, "b:4")  # another site's bookings do not count
    answer = api.get("/sites/a/availability", params={"from": iso(t0 - HOUR), "to": iso(t0 + 4 * HOUR)})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["site"], doc["cpus"], doc["memory_gb"]) == ("a", 4, 2.0)
    steps = [
        (parse_time(s["begin"]) - t0, parse_time(s["end"]) - t0, s["free_cpus"], s["free_memory_gb"])
        for s in doc["steps"]
    ]
    assert steps == [
        (-HOUR, 0, 4, 2.0),
        (0, HOUR, 2, 1.0),
        (HOUR, 2 * HOUR, 1, 0.5),
        (2 * HOUR, 3 * HOUR, 3, 1.5),
        (3 * HOUR, 4 * HOUR, 4, 2.0),
    ]


def test_availability_defaults_to_the_next_week_and_refuses_a_backward_span(api: Api, t0: int) -> None:
    doc = api.get("/sites/b/availability").json()
    (step,) = doc["steps"]
    assert parse_time(step["end"]) - parse_time(step["begin"]) == 7 * 24 * HOUR
    assert step["free_cpus"] == 4
    backward = api.get("/sites/b/availability", params={"from": iso(t0), "to": iso(t0 - HOUR)})
    error_of(backward, 400)
    error_of(api.get("/sites/zz/availability"), 404)


def test_slot_search_returns_windows_that_post_accepts(api: Api, t0: int) -> None:
    now = int(time.time())
    api.as_("bob").reserved(now + 60, t0 + HOUR, "a:3")
    api.as_("bob").reserved(now + 60, t0 + 2 * HOUR, "b:2")
    found = api.post(
        "/slots/search",
        {
            "sites": [{"site": "a", "cpus": 2}, {"site": "b", "cpus": 3, "memory_gb": 0.5}],
            "duration": "2h",
            "count": 2,
        },
    )
    assert found.status_code == 200, found.text
    # The earliest start at which both fit is when b's booking ends (a's ends before it); no
    # booking ends after that, so there is no later start worth offering.
    (window,) = found.json()["windows"]
    assert window == {"begin": iso(t0 + 2 * HOUR), "end": iso(t0 + 4 * HOUR)}
    early = api.reserve(t0 + 2 * HOUR - 1, t0 + 4 * HOUR - 1, "a:2", "b:3:0.5")
    assert error_of(early, 409)["next_window"] == window  # a second earlier does not fit
    made = api.reserve(parse_time(window["begin"]), parse_time(window["end"]), "a:2", "b:3:0.5")
    assert made.status_code == 201, made.text


def test_slot_search_before_a_deadline_may_find_nothing(api: Api, t0: int) -> None:
    api.as_("bob").reserved(int(time.time()) + 60, t0, "a:4")
    found = api.post(
        "/slots/search",
        {"sites": [{"site": "a", "cpus": 1}], "duration": 3600, "not_after": iso(t0 - HOUR)},
    )
    assert found.status_code == 200 and found.json() == {"windows": []}


# -- the published description -------------------------------------------------------------------
def test_the_openapi_document_is_openapi_3_and_names_every_route(api: Api) -> None:
    doc = api.client.get("/api/openapi.json").json()
    assert re.fullmatch(r"3\.\d+\.\d+", doc["openapi"])
    paths = set(doc["paths"])
    for path in (
        "/api/v1/reservations",
        "/api/v1/reservations/{rid}",
        "/api/v1/reservations/{rid}/events",
        "/api/v1/slots/search",
        "/api/v1/sites/{name}/availability",
        "/api/v1/tokens/{token_id}",
        "/api/v1/users/me",
    ):
        assert path in paths
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "409" in doc["paths"]["/api/v1/reservations"]["post"]["responses"]


def test_the_interactive_docs_load_only_assets_served_here(api: Api) -> None:
    page = api.client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", page.text)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    urls = re.findall(r"""url:\s*["']([^"']+)["']""", page.text)
    assert len(assets) >= 3 and "/api/openapi.json" in urls
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert api.client.get(asset).status_code == 200, asset


def test_the_routes_run_in_a_small_thread_pool(seeded: Seeded) -> None:
    with TestClient(create_app(seeded.settings, web=False)) as client:
        assert client.portal is not None
        limiter = client.portal.call(anyio.to_thread.current_default_thread_limiter)
        assert limiter.total_tokens == WORKER_THREADS == 4
