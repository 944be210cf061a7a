"""The REST API end to end, through real HTTP to `pcc serve` (its loop, pool and SSH sites
real): a reservation made with a token boots a cluster one can log in to, is extended and
cancelled, and its events tell the story; tokens, other users and the calendar are refused
as documented. One VM boot in this module."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pcc.common.timefmt import iso, parse_time
from pcc.controller.service import Actor
from pcc.dev.controller_env import Controller, Served, ssh_login
from pcc.dev.ssh_sites import SshSite

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]

ROOT = Actor("root", admin=True)


@pytest.fixture(scope="module")
def tokens(controller: Controller) -> dict[str, str]:
    """Users alice (with the scientist's key) and bob, and an API token each."""
    svc = controller.service
    out = {}
    for name in ("alice", "bob"):
        if svc.store.user(name) is None:
            svc.add_user(ROOT, name, f"{name}@example.org", controller.user_public_key())
        out[name] = svc.create_token(ROOT, user=name, label="test_api")[0]
    return out


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{served.url}/api/v1", timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(
    served: Served, what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0
) -> Any:
    """Poll ``check`` until it returns something true; fail with `pcc serve`'s log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}\npcc serve said:\n{served.log()}"
    )


def test_sites_show_a_and_b_up_with_their_images_and_c_down(
    served: Served, http: httpx.Client, tokens: dict[str, str]
) -> None:
    def probed() -> dict[str, dict[str, Any]] | None:
        answer = http.get("/sites", headers=bearer(tokens["alice"]))
        assert answer.status_code == 200, answer.text
        sites = {s["name"]: s for s in answer.json()}
        return sites if all(s["last_probe"] for s in sites.values()) else None

    sites = wait_for(served, "every site's first probe", probed, timeout=60)
    assert sorted(sites) == ["a", "b", "c"]
    for name in ("a", "b"):
        assert sites[name]["health"] == "up", sites[name]
        assert sites[name]["images"] == ["tiny", "tiny-legacy"]  # what the test sites' repositories hold
        assert sites[name]["pragma_version"]
    assert sites["c"]["health"] == "down" and sites["c"]["reason"]
    assert sites["c"]["images"] is None


def test_no_token_a_revoked_token_and_an_expired_token_are_401(
    http: httpx.Client, tokens: dict[str, str]
) -> None:
    anonymous = http.get("/reservations")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["type"] == "Unauthenticated"

    made = http.post("/tokens", json={"label": "to revoke"}, headers=bearer(tokens["alice"]))
    assert made.status_code == 201, made.text
    doomed = made.json()
    assert http.get("/users/me", headers=bearer(doomed["token"])).json()["name"] == "alice"
    assert http.delete(f"/tokens/{doomed['id']}", headers=bearer(tokens["alice"])).status_code == 200
    revoked = http.get("/users/me", headers=bearer(doomed["token"]))
    assert revoked.status_code == 401 and revoked.headers["www-authenticate"] == "Bearer"

    brief = http.post("/tokens", json={"expires_in": 1}, headers=bearer(tokens["alice"])).json()
    assert http.get("/users/me", headers=bearer(brief["token"])).status_code == 200
    time.sleep(2)
    expired = http.get("/users/me", headers=bearer(brief["token"]))
    assert expired.status_code == 401 and expired.headers["www-authenticate"] == "Bearer"


def test_over_capacity_is_409_with_the_reason_and_the_next_window(
    http: httpx.Client, tokens: dict[str, str]
) -> None:
    tomorrow = (int(time.time()) // 3600 + 24) * 3600  # far enough that nothing boots

    def doc(cpus: int, begin: int, end: int) -> dict[str, Any]:
        allocations = [{"site": "b", "cpus": cpus, "memory_gb": 0.5}]
        return {"image": "tiny", "begin": iso(begin), "end": iso(end), "allocations": allocations}

    filler = http.post("/reservations", json=doc(4, tomorrow, tomorrow + 3600), headers=bearer(tokens["bob"]))
    assert filler.status_code == 201, filler.text
    try:
        clash = http.post(
            "/reservations", json=doc(2, tomorrow + 1800, tomorrow + 5400), headers=bearer(tokens["alice"])
        )
        assert clash.status_code == 409, clash.text
        error = clash.json()["error"]
        assert error["type"] == "CapacityError"
        assert "b" in error["reason"] and "CPU" in error["reason"], error
        assert error["next_window"] == {"begin": iso(tomorrow + 3600), "end": iso(tomorrow + 7200)}
    finally:
        assert (
            http.delete(f"/reservations/{filler.json()['id']}", headers=bearer(tokens["bob"])).status_code
            == 200
        )


def test_a_reservation_boots_is_extended_and_cancelled_over_http(
    served: Served,
    http: httpx.Client,
    tokens: dict[str, str],
    controller: Controller,
    ssh_sites: dict[str, Any],
) -> None:
    alice, bob = bearer(tokens["alice"]), bearer(tokens["bob"])
    made = http.post(
        "/reservations",
        json={
            "image": "tiny",
            "begin": "now",
            "duration": "10m",
            "title": "over http",
            "allocations": [{"site": "a", "cpus": 2}],
        },
        headers=alice,
    )
    assert made.status_code == 201, made.text
    res = made.json()
    rid = res["id"]
    assert made.headers["location"] == f"/api/v1/reservations/{rid}"
    assert (res["owner"], res["state"], res["title"]) == ("alice", "requested", "over http")
    path = f"/reservations/{rid}"

    def allocation() -> dict[str, Any]:
        answer = http.get(path, headers=alice)
        assert answer.status_code == 200, answer.text
        (alloc,) = answer.json()["allocations"]
        assert alloc["state"] != "failed", f"{alloc}\n{served.log()}"
        return alloc

    alloc = wait_for(served, f"{rid} to run", lambda: (a := allocation())["state"] == "running" and a, 240)
    host, _, port = alloc["public_address"].partition(":")
    assert host == "127.0.0.2" and port.isdigit()
    assert alloc["login_command"] == f"ssh -p {port} root@{host}"
    assert (alloc["nodes_up"], alloc["nodes_total"]) == (2, 2)
    assert ssh_login(controller.user_key, host, int(port), "hostname") == f"{rid}-frontend"

    # Someone else's reservation is no one's: not to read, follow, change nor cancel.
    for answer in (
        http.get(path, headers=bob),
        http.get(f"{path}/events", headers=bob),
        http.patch(path, json={"end": iso(parse_time(res["end"]) + 60)}, headers=bob),
        http.delete(path, headers=bob),
    ):
        assert answer.status_code == 404 and answer.json()["error"]["type"] == "NotFound", answer.text
    assert http.get(path, headers=alice).json()["state"] == "running"

    later = parse_time(res["end"]) + 300
    extended = http.patch(path, json={"end": iso(later)}, headers=alice)
    assert extended.status_code == 200, extended.text
    assert extended.json()["end"] == iso(later)
    assert http.get(path, headers=alice).json()["end"] == iso(later)

    cancelled = http.delete(path, headers=alice)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled"] is True

    done = wait_for(
        served,
        f"{rid} to be torn down",
        lambda: (a := allocation())["state"] in ("stopped", "cancelled") and a,
        120,
    )
    assert done["login_command"] == ""
    assert http.get(path, headers=alice).json()["state"] == done["state"]

    events = http.get(f"{path}/events", headers=alice)
    assert events.status_code == 200
    steps = [(e["from"], e["to"]) for e in events.json() if e["site"] == "a"]
    for (_, reached), (left, _) in itertools.pairwise(steps):
        assert left == reached, steps  # each event starts where the one before ended
    assert [to for _from, to in steps] == [
        "requested",
        "scheduled",
        "booting",
        "running",
        "stopping",
        "stopped",
    ], steps
    assert all(e["time"].endswith("Z") and e["why"] for e in events.json())
    site: SshSite = next(s for s in ssh_sites["sites"] if s.name == "a")
    assert site.site.leftovers(rid) == []
