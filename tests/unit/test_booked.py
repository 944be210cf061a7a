"""The LibreBooking connector's pure parts and its service calls: ``[booked]`` loading, the
Status texts, a booking linked to one reservation only, calendar users mapped to PCC users."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from pcc.booked.status import rejected_text, rejection_reason, status_text
from pcc.common.errors import CapacityError, ConfigError, Forbidden, UserInputError
from pcc.controller.model import Allocation, Reservation, State
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.store import Store

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
SITE = """
[[sites]]
name = "ucsd"
host = "127.0.0.2"
user = "pragma"
key = "keys/id"
known_hosts = "keys/known_hosts"
cpus = 8
memory_gb = 16
"""
BOOKED = """
[booked]
url = "http://127.0.0.1:8081/"
user = "pcc"
password = "s3cret"
"""
ADMIN = Actor("booked", admin=True)


def load(tmp_path: Path, booked: str = BOOKED) -> Settings:
    path = tmp_path / "pcc.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n' + SITE + booked)
    return Settings.from_env(config=path)


def test_booked_config_has_pragmas_names_by_default_and_hides_the_password(tmp_path: Path) -> None:
    booked = load(tmp_path).booked
    assert booked is not None
    assert booked.services_url == "http://127.0.0.1:8081/Web/Services/index.php"
    assert (booked.poll_s, booked.lookahead_s, booked.sites_by) == (30.0, 14 * 86_400, "name")
    assert (
        booked.attributes.vc_name == "VC Name" and booked.attributes.available_memory == "Available Gb Memory"
    )
    assert "s3cret" not in repr(booked) and "s3cret" not in repr(load(tmp_path))
    assert load(tmp_path, "").booked is None


def test_the_password_can_live_in_a_file_and_attribute_names_can_change(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    text = BOOKED.replace('password = "s3cret"', 'password_file = "pw"')
    text += '[booked.attributes]\nvc_name = "Image"\n'
    booked = load(tmp_path, text).booked
    assert booked is not None and booked.password() == "from-a-file"
    assert booked.attributes.vc_name == "Image" and booked.attributes.cpus == "CPUs"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('url = "http://127.0.0.1:8081/"', 'url = "ftp://x"', r"\[booked\] url: not an http\(s\) URL"),
        ('password = "s3cret"', "", r"\[booked\] password: give the service account's password"),
        ('password = "s3cret"', 'password = "x"\npassword_file = "y"', r"password: give .* \(one of them\)"),
        ('user = "pcc"', 'user = "a b"', r"\[booked\] user:"),
        ('user = "pcc"', 'user = "pcc"\npoll_seconds = 0', r"poll_seconds: must be > 0"),
        ('user = "pcc"', 'user = "pcc"\nsites_by = "id"', r"sites_by: \"name\" or \"attribute\""),
        ('user = "pcc"', 'user = "pcc"\nlookahead_days = 400', r"lookahead_days: must be"),
    ],
)
def test_booked_config_mistakes_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, BOOKED.replace(old, new))


def test_a_password_file_is_read_when_used_not_when_pcc_toml_loads(tmp_path: Path) -> None:
    # The jobs HTCondor runs as the pool's user load pcc.toml too; they never read the file.
    booked = load(tmp_path, BOOKED.replace('password = "s3cret"', 'password_file = "missing"')).booked
    assert booked is not None
    with pytest.raises(ConfigError, match=r"\[booked\] password_file: cannot read .*missing"):
        booked.password()
    (tmp_path / "missing").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        booked.password()


def test_attribute_names_must_be_known_and_distinct(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[booked.attributes\] colour: unknown attribute role"):
        load(tmp_path, BOOKED + '[booked.attributes]\ncolour = "x"\n')
    with pytest.raises(ConfigError, match="share a label"):
        load(tmp_path, BOOKED + '[booked.attributes]\ncpus = "VC Name"\n')


def reservation(*states: State, **alloc: object) -> Reservation:
    allocations = tuple(
        Allocation("r00001", f"s{i}", 2, 1.0, state=state, **alloc)  # type: ignore[arg-type]
        for i, state in enumerate(states)
    )
    return Reservation(
        "r00001", "alice", "", "tiny", 1_800_000_000, 1_800_003_600, 0, allocations=allocations
    )


def test_status_texts_say_what_a_user_needs() -> None:
    assert status_text(reservation(State.REQUESTED)) == "Requested"
    assert status_text(reservation(State.SCHEDULED)) == "Scheduled: boots at 2027-01-15 08:00:00Z"
    assert status_text(reservation(State.BOOTING, nodes_up=1, nodes_total=3)) == "Booting (1/3 nodes up)"
    running = reservation(State.RUNNING, public_ip="127.0.0.2:2201")
    assert status_text(running) == "Running: ssh -p 2201 root@127.0.0.2"
    two = reservation(State.RUNNING, State.RUNNING, public_ip="10.0.0.1")
    assert status_text(two) == "Running: s0: ssh root@10.0.0.1; s1: ssh root@10.0.0.1"
    assert status_text(reservation(State.STOPPED)) == "Stopped"
    assert status_text(reservation(State.CANCELLED)) == "Stopped"
    assert status_text(reservation(State.FAILED, reason="no such image")) == "Failed: no such image"
    assert len(status_text(reservation(State.FAILED, reason="x" * 2000))) == 500


def test_a_rejection_says_why_and_when_it_would_fit() -> None:
    from pcc.controller.slots import Window

    exc = CapacityError("site ucsd is short of 2 CPUs", next_window=Window(1_800_000_000, 1_800_003_600))
    text = rejected_text(rejection_reason(exc))
    assert text == (
        "Rejected: site ucsd is short of 2 CPUs; the next window that fits: "
        "2027-01-15 08:00:00Z to 2027-01-15 09:00:00Z"
    )
    assert (
        rejected_text(rejection_reason(UserInputError("unknown image 'x'"))) == "Rejected: unknown image 'x'"
    )


@pytest.fixture
def service(tmp_path: Path) -> Service:
    s = load(tmp_path)
    store = Store(s.database)
    store.set_site_images("ucsd", ["tiny"])
    return Service(s, store)


def test_a_booking_becomes_one_reservation_however_often_or_concurrently_it_is_reserved(
    service: Service,
) -> None:
    begin = int(time.time()) + 3600
    alice = Actor("alice")
    service.add_user(ADMIN, "alice", "alice@lab.org", KEY)
    made: list[str] = []

    def reserve() -> None:
        other = Service(service.settings, Store(service.settings.database), sync_sites=False)
        res = other.reserve(alice, "tiny", [SiteRequest("ucsd", 2, 1)], begin, begin + 600, booking="ab12cd")
        made.append(res.id)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and len(made) == 4
    assert [r.id for r in service.reservations(ADMIN)] == made[:1]
    link = service.booked_links(ADMIN)["ab12cd"]
    assert (link.reservation, link.rejected) == (made[0], "")
    # Unlinked (to book it again, e.g. at a new start), the next reserve makes a new one.
    service.cancel(alice, made[0])
    service.record_booked(ADMIN, "ab12cd", reservation=None)
    again = service.reserve(
        alice, "tiny", [SiteRequest("ucsd", 2, 1)], begin + 60, begin + 600, booking="ab12cd"
    )
    assert again.id != made[0] and service.booked_links(ADMIN)["ab12cd"].reservation == again.id


def test_only_an_admin_links_bookings_and_references_are_checked(service: Service) -> None:
    with pytest.raises(Forbidden):
        service.booked_links(Actor("alice"))
    with pytest.raises(UserInputError, match="not a LibreBooking reference"):
        service.record_booked(ADMIN, "x'; drop table", rejected="no")
    link = service.record_booked(ADMIN, "ref1", rejected="site ucsd is short", fingerprint="f")
    assert dataclasses.astuple(link) == ("ref1", None, "f", "", "site ucsd is short")
    assert service.record_booked(ADMIN, "ref1", status="Rejected: x").fingerprint == "f"


def test_calendar_users_map_by_name_then_email_else_are_created(service: Service) -> None:
    service.add_user(ADMIN, "alice", "alice@lab.org", KEY)
    assert service.calendar_user(ADMIN, "Alice", "", "").name == "alice"
    assert service.calendar_user(ADMIN, "asmith", "ALICE@lab.org", "").name == "alice"
    bob = service.calendar_user(ADMIN, "bob", "bob@lab.org", KEY)
    assert (bob.name, bob.email, bob.ssh_key) == ("bob", "bob@lab.org", KEY)
    # A name PCC cannot use: the email's local part; a bad key in a profile is not kept.
    carol = service.calendar_user(ADMIN, "Carol Jones", "carol.jones@lab.org", "not a key")
    assert (carol.name, carol.ssh_key) == ("carol-jones", "")
    with pytest.raises(UserInputError, match="has no name PCC can use"):
        service.calendar_user(ADMIN, "ÜÏ", "", "")
    with pytest.raises(Forbidden):
        service.calendar_user(Actor("bob"), "dave", "", "")
