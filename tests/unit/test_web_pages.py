"""The web page over HTTP (FastAPI's TestClient over a store in a temporary directory; no
pool, no site): logins and sessions, CSRF, every form without JavaScript, the grid's
table structure, and the pages' security headers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from httpx import Response

from pcc.api.app import create_app
from pcc.common.errors import CapacityError, UserInputError
from pcc.controller import accounts
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.slots import Window
from pcc.controller.store import Store

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
ROOT = Actor("root", admin=True)
PASSWORD = "correct horse battery"
SITES = "".join(
    f'[[sites]]\nname = "{name}"\nhost = "127.0.0.{i + 2}"\nport = 2222\nuser = "pcc"\nkey = "k"\n'
    f'known_hosts = "kh"\ncpus = 4\nmemory_gb = 2\ndeployment_type = "{kind}"\nent = {ent}\n'
    for i, (name, kind, ent) in enumerate((("a", "libvirt", "false"), ("b", "ec2", "true")))
)


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2, with the cheapest parameters: these tests are about pages, not hashing."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def service(tmp_path: Path) -> Service:
    config = tmp_path / "pcc.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n' + SITES)
    svc = Service(Settings.from_env(config=config), Store(Settings.from_env(config=config).database))
    for site in ("a", "b"):
        svc.store.set_site_images(site, ["tiny"])
        svc.store.record_health(site, "up", "", time.time(), 0.1, "1.0")
    for name, admin in (("alice", False), ("ada", True)):
        svc.add_user(ROOT, name, f"{name}@lab.org", KEY, admin=admin)
        svc.set_password(ROOT, name, PASSWORD)
    return svc


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service.settings), follow_redirects=False) as c:
        yield c


def csrf_of(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:2000]
    return found.group(1)


def log_in(client: TestClient, name: str = "alice", password: str = PASSWORD, next_: str = "/") -> Response:
    form = client.get("/login")
    return client.post(
        "/login", data={"name": name, "password": password, "csrf": csrf_of(form), "next": next_}
    )


@pytest.fixture
def alice(client: TestClient) -> TestClient:
    assert log_in(client).status_code == 303
    return client


@pytest.fixture
def ada(client: TestClient) -> TestClient:
    assert log_in(client, "ada").status_code == 303
    return client


def tree(page: Response) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(page.text)


# -- logging in ----------------------------------------------------------------------------------
def test_pages_need_a_login_and_come_back_after_it(client: TestClient) -> None:
    assert client.get("/").headers["location"] == "/login"
    assert client.get("/reservations?all=1").headers["location"] == "/login?next=%2Freservations%3Fall%3D1"
    answer = log_in(client, next_="/reservations?all=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/reservations?all=1"


def test_a_wrong_password_is_said_in_an_alert_and_sets_no_session(client: TestClient) -> None:
    answer = log_in(client, password="wrong password")
    assert answer.status_code == 401
    assert tree(answer).xpath('//*[@role="alert"]')[0].text_content() == (
        "Could not log in: wrong user name or password."
    )
    assert "pcc_session" not in client.cookies


def test_the_session_cookie_is_httponly_and_samesite_strict(client: TestClient) -> None:
    answer = log_in(client)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("pcc_session="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http here; https requests get Secure


def test_after_login_only_local_paths_are_followed(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client.cookies.clear()
        assert log_in(client, next_=target).headers["location"] == "/"


def test_the_login_form_needs_its_own_csrf_token(client: TestClient) -> None:
    answer = client.post("/login", data={"name": "alice", "password": PASSWORD, "csrf": "x"})
    assert answer.status_code == 403 and "out of date" in answer.text


def test_the_login_page_sends_a_logged_in_user_on(alice: TestClient) -> None:
    assert alice.get("/login?next=/sites").headers["location"] == "/sites"


def test_logging_out_ends_the_session(alice: TestClient) -> None:
    page = alice.get("/")
    assert alice.post("/logout", data={"csrf": csrf_of(page)}).headers["location"] == "/login?bye=1"
    assert alice.get("/").status_code == 303
    assert "You are logged out" in alice.get("/login?bye=1").text


# -- CSRF ---------------------------------------------------------------------------------------
def test_a_post_without_the_csrf_token_is_refused(alice: TestClient, service: Service) -> None:
    data = {
        "site": "a",
        "cpus": "1",
        "memory_gb": "1",
        "image": "tiny",
        "duration": "1h",
        "action": "reserve",
    }
    for token in ({}, {"csrf": "forged"}):
        answer = alice.post("/reserve", data={**data, **token})
        assert answer.status_code == 403 and "security token" in answer.text
    assert service.reservations(ROOT) == []


def test_htmx_requests_may_send_the_csrf_token_as_a_header(alice: TestClient) -> None:
    token = csrf_of(alice.get("/"))
    data = {"site": "a", "cpus": "1", "memory_gb": "1", "image": "tiny", "duration": "1h"}
    answer = alice.post("/reserve/check", data=data, headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert answer.status_code == 200 and "It fits" in answer.text and "<html" not in answer.text


def test_an_htmx_request_after_the_session_ended_is_sent_to_the_login_page(client: TestClient) -> None:
    answer = client.get("/?partial=1", headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["hx-redirect"] == "/login"


# -- the schedule -------------------------------------------------------------------------------
def test_the_schedule_is_a_table_with_column_and_row_headers(alice: TestClient, service: Service) -> None:
    now = int(time.time())
    service.reserve(Actor("alice"), "tiny", [SiteRequest("a", 2, 1)], now, now + 3600, title="my run")
    grid = tree(alice.get("/?view=week")).xpath('//table[contains(@class, "grid")]')[0]
    assert grid.xpath("caption")[0].text_content().startswith("Week from ")
    cols = grid.xpath("thead/tr/th")
    assert len(cols) == 8 and {th.get("scope") for th in cols} == {"col"}
    rows = grid.xpath("tbody/tr/th")
    assert rows and {th.get("scope") for th in rows} == {"row"}
    assert [th.text_content().split()[0] for th in grid.xpath('tbody/tr/th[contains(@class, "site")]')] == [
        "a",
        "b",
    ]
    bar = grid.xpath('.//td[contains(@class, "bar")]')[0]
    text = " ".join(bar.text_content().split())
    assert "my run" in text and "alice · yours" in text and "requested" in text
    assert int(bar.get("colspan")) >= 1


def test_the_schedule_shows_others_bookings_without_their_keys_or_addresses(
    alice: TestClient, service: Service
) -> None:
    now = int(time.time())
    other = service.reserve(
        ROOT, "tiny", [SiteRequest("b", 2, 1)], now, now + 3600, title="ada's run", owner="ada"
    )
    aid = other.allocations[0].id
    assert aid is not None
    service.store.update_allocation(aid, public_ip="127.0.0.9:22001", frontend="r00001-frontend")
    page = alice.get("/?view=week")
    bars = [" ".join(td.text_content().split()) for td in tree(page).xpath('//td[contains(@class, "bar")]')]
    assert len(bars) == 1 and "ada's run" in bars[0] and "ada" in bars[0] and "yours" not in bars[0]
    assert "127.0.0.9" not in page.text and "r00001-frontend" not in page.text and KEY not in page.text
    # The shared calendar is not a way around the rule that others' reservations are not hers.
    assert alice.get("/reservations?all=1").text.count("ada's run") == 0


def test_each_view_has_its_columns_and_links_to_the_next_and_previous(alice: TestClient) -> None:
    for view, count in (("day", 24), ("week", 7), ("2weeks", 14)):
        page = tree(alice.get(f"/?view={view}&start=2026-12-01"))
        assert len(page.xpath('//table[contains(@class, "grid")]/thead/tr/th')) == count + 1
        dates = {
            a.text_content().strip(): a.get("href")
            for a in page.xpath('//nav[@aria-label="Schedule dates"]//a')
        }
        assert any("start=2026-11-" in href for href in dates.values())
        assert dates["Today"] == f"/?view={view}"


def test_the_strip_shows_free_cpus_and_the_filter_keeps_matching_sites(
    alice: TestClient, service: Service
) -> None:
    now = int(time.time())
    service.reserve(Actor("alice"), "tiny", [SiteRequest("b", 3, 1)], now, now + 600)
    page = tree(alice.get("/?view=day"))
    strip = page.xpath('//tr[@class="strip"]')[1]
    assert "b: free CPUs" in strip.xpath("th")[0].text_content()
    assert "1" in [td.text_content().strip() for td in strip.xpath("td")]
    ent_only = tree(alice.get("/?ent=1"))
    assert [th.text_content().split()[0] for th in ent_only.xpath('//th[contains(@class, "site")]')] == ["b"]
    typed = tree(alice.get("/?type=libvirt"))
    assert [th.text_content().split()[0] for th in typed.xpath('//th[contains(@class, "site")]')] == ["a"]


def test_the_live_part_of_the_schedule_comes_alone(alice: TestClient) -> None:
    page = alice.get("/?view=day&partial=1")
    assert page.status_code == 200 and "<html" not in page.text and 'class="grid view-day"' in page.text
    assert 'hx-swap-oob="innerHTML"' in page.text


def test_a_bad_view_is_a_friendly_page_not_a_traceback(alice: TestClient) -> None:
    answer = alice.get("/?view=month")
    assert answer.status_code == 400
    assert tree(answer).xpath('//p[@role="alert"]')[0].text_content().startswith("unknown view 'month'")
    missing = alice.get("/sites/nowhere")
    assert missing.status_code == 404 and "unknown site" in tree(missing).text_content()


# -- the reservation form, without JavaScript --------------------------------------------------
def reserve_form(client: TestClient, **fields: str) -> dict[str, str]:
    page = client.get("/reserve")
    return {"csrf": csrf_of(page), "site": "a", "cpus": "1", "memory_gb": "1", "image": "tiny", **fields}


def test_the_form_checks_the_fit_and_makes_a_reservation(alice: TestClient, service: Service) -> None:
    data = reserve_form(alice, duration="2h", title="no js")
    checked = alice.post("/reserve", data={**data, "action": "check"})
    assert checked.status_code == 200 and "It fits" in checked.text
    assert service.reservations(ROOT) == []  # a check is a dry run
    made = alice.post("/reserve", data={**data, "action": "reserve"})
    assert made.status_code == 303 and made.headers["location"] == "/reservations?made=r00001"
    (res,) = service.reservations(Actor("alice"))
    assert (res.title, res.end - res.begin, res.ssh_key) == ("no js", 7200, KEY)  # the user's key
    mine = alice.get(made.headers["location"])
    assert "Reservation r00001 is made" in mine.text and "no js" in mine.text


def test_the_fit_check_refuses_what_reserve_refuses_and_stores_nothing(service: Service) -> None:
    now = int(time.time())
    service.check_fit(Actor("alice"), "tiny", [SiteRequest("a", 4, 2)], now, now + 60)
    with pytest.raises(UserInputError, match="unknown image 'centos7'"):
        service.check_fit(Actor("alice"), "centos7", [SiteRequest("a", 1, 1)], now, now + 60)
    service.reserve(Actor("alice"), "tiny", [SiteRequest("a", 4, 1)], now, now + 3600)
    with pytest.raises(CapacityError) as refused:
        service.check_fit(Actor("alice"), "tiny", [SiteRequest("a", 1, 1)], now + 60, now + 120)
    assert refused.value.details["next_window"] == Window(now + 3600, now + 3660)
    assert len(service.reservations(ROOT)) == 1


def test_a_user_without_a_key_is_asked_to_paste_one(alice: TestClient, service: Service) -> None:
    service.update_user(ROOT, "alice", ssh_key="")
    data = reserve_form(alice, duration="1h")
    page = tree(alice.post("/reserve", data={**data, "action": "check"}))
    assert (
        "your account has no SSH key: paste a public key"
        in page.xpath('//*[@role="alert"]')[0].text_content()
    )
    pasted = alice.post("/reserve", data={**data, "ssh_key": KEY, "action": "reserve"})
    assert pasted.status_code == 303


def test_add_another_site_works_without_javascript(alice: TestClient) -> None:
    data = reserve_form(alice)
    page = tree(alice.post("/reserve", data={**data, "action": "add_site"}))
    assert [s.get("id") for s in page.xpath('//select[@name="site"]')] == ["site-1", "site-2"]
    assert page.xpath('//select[@id="site-2"]')[0].get("autofocus") is not None


def test_a_rejected_request_offers_the_next_window_and_taking_it_fits(
    alice: TestClient, service: Service
) -> None:
    tomorrow = int(time.time()) // 3600 * 3600 + 86_400
    service.reserve(
        ROOT, "tiny", [SiteRequest("a", 4, 1)], tomorrow, tomorrow + 7200, owner="ada", ssh_key=KEY
    )
    begin = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(tomorrow + 3600))
    data = reserve_form(alice, cpus="2", begin=begin, duration="1h")
    checked = tree(alice.post("/reserve", data={**data, "action": "check"}))
    assert "It does not fit" in checked.text_content() and "site a" in checked.text_content()
    take = checked.xpath('//button[starts-with(@value, "take:")]')[0]
    assert take.get("value") == f"take:{tomorrow + 7200}-{tomorrow + 10800}"
    taken = tree(alice.post("/reserve", data={**data, "action": take.get("value")}))
    assert taken.xpath('//input[@id="begin"]')[0].get("value") == time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(tomorrow + 7200)
    )
    assert taken.xpath('//input[@id="duration"]')[0].get("value") == ""
    assert "It fits" in taken.text_content()


def test_a_submit_that_does_not_fit_is_a_409_page_with_the_reason(
    alice: TestClient, service: Service
) -> None:
    now = int(time.time())
    service.reserve(ROOT, "tiny", [SiteRequest("a", 4, 1)], now, now + 7200, owner="ada", ssh_key=KEY)
    answer = alice.post("/reserve", data={**reserve_form(alice, duration="1h"), "action": "reserve"})
    assert (
        answer.status_code == 409 and "It does not fit" in answer.text and "Take this window" in answer.text
    )


def test_extend_and_cancel_work_as_plain_forms(alice: TestClient, service: Service) -> None:
    now = int(time.time()) + 3600
    res = service.reserve(Actor("alice"), "tiny", [SiteRequest("a", 1, 1)], now, now + 3600)
    token = csrf_of(alice.get("/reservations"))
    extended = alice.post(f"/reservations/{res.id}/extend", data={"csrf": token, "add": "3600"})
    assert extended.headers["location"] == f"/reservations?extended={res.id}"
    assert service.reservation(Actor("alice"), res.id).end == now + 7200
    refused = alice.post(f"/reservations/{res.id}/extend", data={"csrf": token, "until": "2020-01-01T00:00"})
    assert refused.status_code == 400 and "must move the end later" in refused.text
    cancelled = alice.post(f"/reservations/{res.id}/cancel", data={"csrf": token})
    assert cancelled.headers["location"] == f"/reservations?cancelled={res.id}"
    assert service.reservation(Actor("alice"), res.id).cancelled
    again = alice.post(f"/reservations/{res.id}/cancel", data={"csrf": token})
    assert again.status_code == 409 and "already" in again.text


def test_the_live_part_of_my_reservations_swaps_each_one_out_of_band(
    alice: TestClient, service: Service
) -> None:
    now = int(time.time()) + 3600
    res = service.reserve(Actor("alice"), "tiny", [SiteRequest("a", 1, 1)], now, now + 3600)
    page = alice.get("/reservations?partial=1")
    assert "<html" not in page.text and f'id="live-{res.id}" hx-swap-oob="true"' in page.text
    assert f"{res.id}: requested at a." in page.text


def test_an_admin_sees_everyones_reservations_when_asking(ada: TestClient, service: Service) -> None:
    now = int(time.time()) + 3600
    res = service.reserve(Actor("alice"), "tiny", [SiteRequest("a", 1, 1)], now, now + 3600, title="hers")
    assert "hers" not in ada.get("/reservations").text
    everyone = ada.get("/reservations?all=1")
    assert "All reservations" in everyone.text and f"{res.id} · hers" in everyone.text


def test_someone_elses_reservation_is_not_found(alice: TestClient, service: Service) -> None:
    now = int(time.time()) + 3600
    res = service.reserve(ROOT, "tiny", [SiteRequest("b", 1, 1)], now, now + 3600, owner="ada", ssh_key=KEY)
    token = csrf_of(alice.get("/reservations"))
    assert alice.post(f"/reservations/{res.id}/cancel", data={"csrf": token}).status_code == 404
    assert not service.reservation(ROOT, res.id).cancelled


# -- admin and tokens ---------------------------------------------------------------------------
def test_admin_pages_are_403_for_users(alice: TestClient) -> None:
    for path in ("/admin/users", "/admin/tokens"):
        answer = alice.get(path)
        assert answer.status_code == 403 and "only an admin" in answer.text


def test_an_admin_adds_a_user_changes_the_role_and_sets_a_password(ada: TestClient, service: Service) -> None:
    token = csrf_of(ada.get("/admin/users"))
    form = {
        "csrf": token,
        "name": "carol",
        "email": "",
        "ssh_key": KEY,
        "role": "user",
        "password": "s3cret-enough",
    }
    assert ada.post("/admin/users", data=form).headers["location"] == "/admin/users?added=carol"
    assert ada.post("/admin/users/carol/role", data={"csrf": token, "role": "admin"}).status_code == 303
    assert service.user(ROOT, "carol").admin
    assert (
        ada.post("/admin/users/carol/password", data={"csrf": token, "password": "another-one"}).status_code
        == 303
    )
    assert service.login("carol", "another-one")[1].name == "carol"
    dup = ada.post("/admin/users", data=form)
    assert dup.status_code == 409 and "already exists" in dup.text


def test_a_new_token_is_shown_once_and_can_be_revoked(alice: TestClient, service: Service) -> None:
    token = csrf_of(alice.get("/tokens"))
    made = alice.post("/tokens", data={"csrf": token, "label": "laptop", "expires_in": "30d"})
    assert made.status_code == 201
    secret = tree(made).xpath('//output[@id="new-token"]')[0].text_content().strip()
    assert secret.startswith(accounts.TOKEN_PREFIX) and service.authenticate(secret).name == "alice"
    assert secret not in alice.get("/tokens").text
    (info,) = service.tokens(Actor("alice"))
    assert alice.post(f"/tokens/{info.id}/revoke", data={"csrf": token}).status_code == 303
    assert "revoked" in alice.get("/tokens").text


def test_an_admin_makes_a_token_for_another_user(ada: TestClient, service: Service) -> None:
    token = csrf_of(ada.get("/admin/tokens"))
    made = ada.post("/admin/tokens", data={"csrf": token, "user": "alice", "label": "ci", "expires_in": "1d"})
    secret = tree(made).xpath('//output[@id="new-token"]')[0].text_content().strip()
    assert service.authenticate(secret).name == "alice"


# -- every page ---------------------------------------------------------------------------------
PAGES = ("/", "/?view=day", "/?view=2weeks", "/reserve", "/reservations", "/sites", "/sites/a", "/tokens")
ADMIN_PAGES = ("/admin/users", "/admin/tokens")


def test_no_page_loads_anything_from_elsewhere_nor_inline(client: TestClient) -> None:
    paths = ["/login", *PAGES, *ADMIN_PAGES]
    for i, path in enumerate(paths):
        if i == 1:
            log_in(client, "ada")
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        page = tree(answer)
        refs = page.xpath("//script/@src | //link/@href | //img/@src")
        assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), (path, refs)
        assert not re.search(r"https?://", " ".join(refs))
        assert all(s.get("src") for s in page.xpath("//script")), path  # no inline scripts
        assert not page.xpath("//*[@style] | //style | //*[@*[starts-with(name(), 'on')]]"), path


def test_every_page_has_one_h1_a_skip_link_and_a_main(ada: TestClient) -> None:
    for path in (*PAGES, *ADMIN_PAGES):
        page = tree(ada.get(path))
        assert len(page.xpath("//h1")) == 1, path
        assert page.xpath('//a[@class="skip"]/@href') == ["#main"] and page.xpath('//main[@id="main"]')
        assert page.xpath("//html/@lang") == ["en"]
