"""pcc.toml loading, and the service's validation at the boundary (no site is contacted:
the image catalog is cached in the store)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pcc.common.errors import CapacityError, ConfigError, Conflict, Forbidden, NotFound, UserInputError
from pcc.common.timefmt import parse_duration, parse_time
from pcc.controller.model import State
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.store import Store

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
SITES = """
[[sites]]
name = "ucsd"
host = "127.0.0.2"
port = 2222
user = "pragma"
key = "keys/id"
known_hosts = "keys/known_hosts"
cpus = 8
memory_gb = 16
"""


def settings(tmp_path: Path, text: str = SITES) -> Settings:
    path = tmp_path / "pcc.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n[timings]\nboot_lead_s = 30\n' + text)
    return Settings.from_env(config=path)


def test_a_config_file_gives_state_timings_and_sites(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.state_dir == tmp_path / "state"
    assert s.timings.boot_lead_s == 30 and s.timings.boot_retries == 3
    (site,) = s.sites
    assert (site.name, site.port, site.cpus, site.key) == ("ucsd", 2222, 8, tmp_path / "keys" / "id")
    assert s.embedded and s.boot_universe == "local"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("cpus = 8", "cpus = 0", r"\[sites\[0\]\] cpus: must be > 0"),
        ('name = "ucsd"', 'name = "UC SD"', r"\[sites\[0\]\] name: invalid site name"),
        ("port = 2222", "port = 70000", r"\[sites\[0\]\] port: not a port"),
        ('host = "127.0.0.2"\n', "", r"\[sites\[0\]\] host: missing"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, SITES.replace(old, new))


def test_duplicate_sites_and_bad_timings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="site names must be unique"):
        settings(tmp_path, SITES + SITES)
    with pytest.raises(ConfigError, match=r"\[timings\] reconcile_s: must be > 0"):
        settings(tmp_path, "reconcile_s = 0\n" + SITES)  # lands in the [timings] table


def test_times_and_durations() -> None:
    assert parse_time("2026-12-01T09:00Z") == parse_time("2026-12-01T09:00:00+00:00") == 1796115600
    assert parse_time("2026-12-01T09:00") == 1796115600  # naive means UTC
    assert parse_time("now+1h30m", now=1000) == 1000 + 5400
    assert parse_duration("1d12h") == 129600
    for bad in ("tomorrow", "2026-13-01", "now+soon"):
        with pytest.raises(UserInputError):
            parse_time(bad)


@pytest.fixture
def service(tmp_path: Path) -> Service:
    s = settings(tmp_path)
    store = Store(s.database)
    store.set_site_images("ucsd", ["tiny"])
    return Service(s, store)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end_offset": -10}, "must end after it begins"),
        ({"begin_offset": -3600}, "begins in the past"),
        ({"image": "centos7"}, r"unknown image 'centos7' at site ucsd \(it has: tiny\)"),
        ({"site": SiteRequest("nowhere", 2, 1)}, r"unknown site 'nowhere' \(sites: ucsd\)"),
        ({"site": SiteRequest("ucsd", 0, 1)}, "CPUs and memory must be > 0"),
        ({"site": SiteRequest("ucsd", 2, -1)}, "CPUs and memory must be > 0"),
        ({"site": SiteRequest("ucsd", 9, 1)}, "has 8 CPUs and 16 GB in all"),
        ({"key": "not a key"}, "not an OpenSSH public key"),
    ],
)
def test_bad_reservations_get_clear_errors_and_store_nothing(
    service: Service, kwargs: dict, message: str
) -> None:
    now = time.time()
    begin = now + 600 + kwargs.get("begin_offset", 0)
    end = begin + 3600 if "end_offset" not in kwargs else begin + kwargs["end_offset"]
    with pytest.raises(UserInputError, match=message):
        service.reserve(
            Actor("alice"),
            kwargs.get("image", "tiny"),
            [kwargs.get("site", SiteRequest("ucsd", 2, 1))],
            int(begin),
            int(end),
            ssh_key=kwargs.get("key", KEY),
            now=now,
        )
    assert service.store.reservations() == []


def test_site_requests_parse_and_refuse_garbage() -> None:
    assert SiteRequest.parse("ucsd:4") == SiteRequest("ucsd", 4, 1.0)
    assert SiteRequest.parse("ucsd:4:2.5") == SiteRequest("ucsd", 4, 2.5)
    for bad in ("ucsd", "ucsd:x", "ucsd:1:2:3"):
        with pytest.raises(UserInputError):
            SiteRequest.parse(bad)


def test_extend_rechecks_admission_and_cancel_ends_requested_allocations(service: Service) -> None:
    now = time.time()
    first = service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("ucsd", 6, 1)],
        int(now + 600),
        int(now + 1200),
        ssh_key=KEY,
        now=now,
    )
    service.reserve(
        Actor("bob"),
        "tiny",
        [SiteRequest("ucsd", 4, 1)],
        int(now + 1200),
        int(now + 1800),
        ssh_key=KEY,
        now=now,
    )
    with pytest.raises(CapacityError, match="site ucsd is short of CPUs"):
        service.extend(Actor("alice"), first.id, int(now + 1500))
    with pytest.raises(NotFound, match=f"no reservation '{first.id}'"):  # not bob's to see
        service.cancel(Actor("bob"), first.id)
    cancelled = service.cancel(Actor("alice"), first.id)
    assert cancelled.cancelled and cancelled.allocations[0].state is State.CANCELLED
    with pytest.raises(Conflict, match="already cancelled"):
        service.cancel(Actor("alice"), first.id)


@pytest.mark.parametrize("owner", ['x"\nexecutable = /tmp/evil\n#', "alice\n", "Alice Smith", ""])
def test_owner_names_that_could_reach_a_submit_file_are_refused(service: Service, owner: str) -> None:
    now = time.time()
    with pytest.raises(UserInputError, match="invalid user name"):
        service.reserve(
            Actor(owner),
            "tiny",
            [SiteRequest("ucsd", 2, 1)],
            int(now + 600),
            int(now + 900),
            ssh_key=KEY,
            now=now,
        )


def test_names_with_a_trailing_newline_are_refused(service: Service) -> None:
    now = time.time()
    with pytest.raises(UserInputError, match="invalid image name"):
        service.reserve(
            Actor("alice"),
            "tiny\n",
            [SiteRequest("ucsd", 2, 1)],
            int(now + 600),
            int(now + 900),
            ssh_key=KEY,
            now=now,
        )
    with pytest.raises(UserInputError, match="invalid email"):
        service.add_user(Actor("root", admin=True), "carol", "c@lab\nBcc: x@y", "")


def test_users_see_and_change_only_their_own_reservations_admins_all(service: Service) -> None:
    now = time.time()
    alice, bob, admin = Actor("alice"), Actor("bob"), Actor("root", admin=True)
    mine = service.reserve(
        alice, "tiny", [SiteRequest("ucsd", 1, 1)], int(now + 600), int(now + 900), ssh_key=KEY
    )
    theirs = service.reserve(
        bob, "tiny", [SiteRequest("ucsd", 1, 1)], int(now + 600), int(now + 900), ssh_key=KEY
    )
    assert [r.id for r in service.reservations(alice)] == [mine.id]
    assert [r.id for r in service.reservations(admin)] == [mine.id, theirs.id]
    assert service.reservations(admin, mine=True) == []
    assert service.reservation(alice, mine.id).owner == "alice"
    assert [e.to_state for e in service.events(alice, mine.id)] == ["requested"]
    for call in (service.reservation, service.events, service.cancel):
        with pytest.raises(NotFound, match=f"no reservation '{theirs.id}'"):
            call(alice, theirs.id)
    with pytest.raises(NotFound):
        service.extend(alice, theirs.id, int(now + 1000))
    with pytest.raises(Forbidden, match="alice may not reserve for bob"):
        service.reserve(
            alice, "tiny", [SiteRequest("ucsd", 1, 1)], int(now + 600), int(now + 900), owner="bob"
        )
    with pytest.raises(Forbidden, match="only an admin may add users"):
        service.add_user(alice, "mallory")
    assert service.cancel(admin, theirs.id).cancelled


def test_a_rejected_admission_is_a_conflict_that_says_what_is_short(service: Service) -> None:
    now = time.time()
    service.reserve(
        Actor("alice"), "tiny", [SiteRequest("ucsd", 8, 1)], int(now + 600), int(now + 900), ssh_key=KEY
    )
    with pytest.raises(Conflict, match="site ucsd is short of CPUs") as caught:
        service.reserve(
            Actor("bob"), "tiny", [SiteRequest("ucsd", 1, 1)], int(now + 700), int(now + 800), ssh_key=KEY
        )
    assert "1 short" in caught.value.reason


def test_a_site_that_never_reported_its_images_is_named(tmp_path: Path) -> None:
    s = settings(tmp_path)
    service = Service(s, Store(s.database))
    now = time.time()
    with pytest.raises(UserInputError, match="site ucsd has not reported its images yet"):
        service.reserve(
            Actor("alice"), "tiny", [SiteRequest("ucsd", 1, 1)], int(now + 60), int(now + 90), ssh_key=KEY
        )
    assert [(c.site, c.images) for c in service.images(Actor("alice"))] == [("ucsd", None)]


def test_a_memory_request_that_is_not_a_number_is_refused(service: Service) -> None:
    now = time.time()
    with pytest.raises(UserInputError, match="CPUs and memory must be > 0"):
        service.reserve(
            Actor("alice"),
            "tiny",
            [SiteRequest.parse("ucsd:2:nan")],
            int(now + 60),
            int(now + 90),
            ssh_key=KEY,
        )


@pytest.mark.parametrize(
    ("given", "parse"),
    [
        ("9999999999d", parse_duration),
        (str(10**15), parse_duration),
        ("now+9999999999d", parse_time),
        ("0001-01-01T00:00Z", parse_time),
        ("9999-12-31T23:59Z", parse_time),
    ],
)
def test_times_and_durations_beyond_what_pcc_keeps_are_input_errors_not_crashes(
    given: str, parse: object
) -> None:
    with pytest.raises(UserInputError, match=r"100 years|between 1970 and 3000"):
        parse(given)  # type: ignore[operator]
