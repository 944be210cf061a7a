"""The web page in Debian's Chromium, against `pcc serve` over a real pool and real SSH
sites: log in, read the grid, reserve through the form and watch the cluster run, take the
next window of a rejected request, reserve with the keyboard alone, run the admin pages;
every page passes axe-core and is saved as a screenshot. One VM boots in this module."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from pcc.common.timefmt import parse_time
from pcc.controller.model import Reservation
from pcc.controller.service import Actor, SiteRequest
from pcc.dev.controller_env import Controller, Served
from tests.browser.support import assert_accessible, audit

pytestmark = [pytest.mark.browser, pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]

ROOT = Actor("root", admin=True)
USER, PASSWORD = "alice", "browser-test-password"
HOUR = 3600
RUNNING_TIMEOUT_MS = 240_000


@dataclass
class Web:
    url: str
    served: Served
    controller: Controller
    blocker: Reservation  # bob's: all of site b, tomorrow 09:00-13:00 UTC (never boots here)
    tomorrow: int  # 00:00 UTC tomorrow


@pytest.fixture(scope="module")
def web(controller: Controller, served: Served) -> Web:
    svc, key = controller.service, controller.user_public_key()
    svc.add_user(ROOT, USER, "alice@lab.org", key, admin=True)
    svc.set_password(ROOT, USER, PASSWORD)
    svc.add_user(ROOT, "bob", "bob@lab.org", key)
    tomorrow = (int(time.time()) // 86_400 + 1) * 86_400
    blocker = svc.reserve(
        ROOT,
        "tiny",
        [SiteRequest("b", 4, 1.0)],
        tomorrow + 9 * HOUR,
        tomorrow + 13 * HOUR,
        title="bob's simulation",
        owner="bob",
    )
    return Web(served.url, served, controller, blocker, tomorrow)


def log_in(page: Page, web: Web) -> None:
    page.goto(f"{web.url}/login")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Schedule")


def local(ts: int) -> str:
    """A time as a datetime-local field's value (UTC; Chromium drops ":00" seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M" if ts % 60 == 0 else "%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def made_id(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"/reservations\?made=r\d+$"))
    return page.url.rsplit("=", 1)[1]


def test_logging_in_shows_the_schedule_grid(page: Page, web: Web) -> None:
    page.goto(f"{web.url}/")
    expect(page).to_have_url(f"{web.url}/login")
    audit(page, "login")

    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Could not log in: wrong user name or password.")
    assert_accessible(page, "login with an error")

    log_in(page, web)
    grid = page.locator("table.grid")
    expect(grid.locator("caption")).to_contain_text("Week from")
    expect(grid.locator("th.site a")).to_have_text(["a", "b", "c"])
    expect(grid.locator("th.site").nth(2)).to_contain_text("down")
    bar = grid.locator("td.bar", has_text="bob's simulation")
    expect(bar).to_contain_text("bob")
    expect(bar).not_to_contain_text("yours")
    expect(grid.locator("tr.strip").nth(1).locator("td")).to_contain_text(["4", "0"])  # b is full tomorrow


def test_a_reservation_made_in_the_form_becomes_running_and_is_cancelled(page: Page, web: Web) -> None:
    log_in(page, web)
    page.get_by_role("link", name="Reserve", exact=True).click()
    page.get_by_label("Site", exact=True).select_option("a")
    page.get_by_label("CPUs").fill("2")
    page.get_by_label("Memory (GB)").fill("1")
    page.get_by_label("Image").select_option("tiny")
    page.get_by_label("Or a duration").fill("1h")
    page.get_by_label("Title").fill("browser run")
    page.get_by_role("button", name="Check whether it fits").click()
    expect(page.locator("#fit")).to_contain_text("It fits")
    page.get_by_role("button", name="Reserve", exact=True).click()

    rid = made_id(page)
    expect(page.get_by_role("status").first).to_contain_text(f"Reservation {rid} is made")
    live = page.locator(f"#live-{rid}")
    try:  # the page's own refresh (htmx, every 10 s) brings the state in
        expect(live.locator("code.login")).to_contain_text("ssh -p ", timeout=RUNNING_TIMEOUT_MS)
    except AssertionError:
        print(web.served.log())
        raise
    expect(live.locator("tbody td").nth(2)).to_have_text("▶ running")
    expect(page.locator("#mine-status")).to_contain_text(f"{rid}: running at a")
    audit(page, "my reservations with a running one")

    for view, label in (("day", "Day"), ("2weeks", "Two weeks"), ("week", "Week")):
        page.goto(f"{web.url}/?view={view}")
        bar = page.locator("table.grid td.bar", has_text="browser run")
        expect(bar).to_contain_text("alice · yours")
        expect(bar).to_contain_text("running")
        audit(page, f"schedule, {label.lower()} view", docs="schedule.png" if view == "week" else "")

    page.goto(f"{web.url}/reservations")
    page.get_by_role("button", name=f"Cancel {rid} now").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Reservation {rid} is cancelled")
    try:
        expect(page.locator(f"#live-{rid} tbody td").nth(2)).to_contain_text("stopped", timeout=180_000)
    except AssertionError:
        print(web.served.log())
        raise


def test_a_rejected_request_shows_the_next_window_and_taking_it_works(page: Page, web: Web) -> None:
    log_in(page, web)
    page.goto(f"{web.url}/reserve")
    page.get_by_label("Site", exact=True).select_option("b")
    page.get_by_label("CPUs").fill("2")
    page.get_by_label("Begin").fill(local(web.tomorrow + 10 * HOUR))
    page.get_by_label("Or a duration").fill("1h")
    page.get_by_label("Title").fill("after bob")
    page.get_by_role("button", name="Check whether it fits").click()

    fit = page.locator("#fit")
    expect(fit).to_contain_text("It does not fit: site b is short of CPUs")
    expect(fit).to_contain_text("The next window that fits: ")
    expect(fit).to_contain_text("13:00–14:00Z")
    audit(page, "reservation form, a rejected request with the next window", docs="reserve-fit-check.png")

    page.get_by_role("button", name="Take this window").click()
    expect(fit).to_contain_text("It fits")
    assert parse_time(page.get_by_label("Begin").input_value()) == web.tomorrow + 13 * HOUR
    assert parse_time(page.get_by_label("End, in UTC").input_value()) == web.tomorrow + 14 * HOUR
    expect(page.get_by_label("Title")).to_have_value("after bob")  # the rest of the form is kept
    page.get_by_role("button", name="Reserve", exact=True).click()

    rid = made_id(page)
    made = web.controller.service.reservation(ROOT, rid)
    assert (made.begin, made.end, made.title, made.allocations[0].site) == (
        web.tomorrow + 13 * HOUR,
        web.tomorrow + 14 * HOUR,
        "after bob",
        "b",
    )


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until ``selector`` has the focus (it must be reachable in the tab order)."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    pytest.fail(f"{selector} not reached with {limit} presses of Tab")


def type_datetime(page: Page, ts: int) -> None:
    """Type a time into the focused datetime-local field as Chromium lays it out here
    (en-US: month, day, year, then hour, minute, second, AM/PM)."""
    t = time.gmtime(ts)
    page.keyboard.type(f"{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_year}")
    page.keyboard.press("Tab")
    page.keyboard.type(f"{t.tm_hour % 12 or 12:02d}{t.tm_min:02d}{t.tm_sec:02d}")
    page.keyboard.type("A" if t.tm_hour < 12 else "P")


def test_a_reservation_can_be_made_with_the_keyboard_alone(page: Page, web: Web) -> None:
    page.goto(f"{web.url}/login")
    expect(page.locator("#name")).to_be_focused()  # the name field has the focus (autofocus)
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    expect(page.locator("#password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Schedule")

    tab_to(page, 'nav a[href="/reserve"]')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reserve a cluster")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")  # skip to the main content
    expect(page.locator("main")).to_be_focused()

    begin = (int(time.time()) + 2 * HOUR) // 60 * 60
    page.keyboard.press("Tab")
    expect(page.locator("#site-1")).to_be_focused()  # the form comes first in main
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    page.keyboard.press("Tab")
    expect(page.locator("#memory-1")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.5")
    tab_to(page, "#begin")
    type_datetime(page, begin)
    tab_to(page, "#title")
    page.keyboard.type("keyboard run")
    tab_to(page, 'button[value="check"]')
    page.keyboard.press("Enter")
    expect(page.locator("#fit")).to_contain_text("It fits")
    page.keyboard.press("Tab")
    expect(page.locator('button[value="reserve"]')).to_be_focused()
    page.keyboard.press("Enter")

    rid = made_id(page)
    made = web.controller.service.reservation(ROOT, rid)
    assert (made.begin, made.end - made.begin, made.title) == (begin, HOUR, "keyboard run")
    assert [(a.site, a.cpus, a.memory_gb) for a in made.allocations] == [("a", 1, 0.5)]

    tab_to(page, f'form[action="/reservations/{rid}/cancel"] button')
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text(f"Reservation {rid} is cancelled")
    assert web.controller.service.reservation(ROOT, rid).cancelled


def test_every_page_passes_axe(page: Page, web: Web) -> None:
    log_in(page, web)
    page.goto(f"{web.url}/?view=week&ent=&free=1")
    audit(page, "schedule, filtered")
    page.goto(f"{web.url}/reserve")
    audit(page, "reservation form")
    page.get_by_role("button", name="Check whether it fits").click()
    expect(page.locator("#fit")).to_contain_text("It fits")
    audit(page, "reservation form, it fits")
    page.get_by_role("button", name="Add another site").click()
    expect(page.locator("#site-2")).to_be_focused()
    audit(page, "reservation form, two sites")
    page.goto(f"{web.url}/reservations")
    audit(page, "my reservations")
    page.goto(f"{web.url}/sites")
    audit(page, "sites")
    for site in ("a", "c"):
        page.goto(f"{web.url}/sites/{site}")
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Site {site}")
        audit(page, f"site {site}")
    page.goto(f"{web.url}/tokens")
    audit(page, "your tokens")
    page.goto(f"{web.url}/admin/users")
    audit(page, "admin, users")
    page.goto(f"{web.url}/admin/tokens")
    audit(page, "admin, tokens")
    page.goto(f"{web.url}/sites/nowhere")
    expect(page.get_by_role("alert")).to_contain_text("unknown site 'nowhere'")
    audit(page, "not found")


def test_an_admin_adds_a_user_sets_role_and_password_and_makes_their_token(page: Page, web: Web) -> None:
    svc = web.controller.service
    log_in(page, web)
    page.get_by_role("link", name="Admin").click()
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Email").fill("carol@lab.org")
    page.get_by_label("SSH public key").fill(web.controller.user_public_key())
    page.get_by_label("Initial password").fill("first-password")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("status")).to_have_text("User carol is added.")

    page.get_by_label("Role of carol").select_option("admin")
    page.get_by_role("button", name="Set the role of carol").click()
    expect(page.get_by_role("status")).to_have_text("The role of carol is changed.")
    assert svc.user(ROOT, "carol").admin
    page.get_by_label("New password for carol").fill("second-password")
    page.get_by_role("button", name="Set the password of carol").click()
    expect(page.get_by_role("status")).to_contain_text("The password of carol is set")
    assert svc.login("carol", "second-password")[1].name == "carol"

    page.get_by_role("link", name="All API tokens").click()
    page.get_by_label("For user").select_option("carol")
    page.get_by_label("Label").fill("ci")
    page.get_by_label("Expires in").fill("1d")
    page.get_by_role("button", name="Create the token").click()
    token = page.locator("output#new-token").inner_text().strip()
    assert svc.authenticate(token).name == "carol"
    audit(page, "admin, tokens with a new one shown")

    (info,) = svc.tokens(ROOT, "carol")
    page.goto(f"{web.url}/admin/tokens")
    assert token not in page.content()  # shown once, never again
    page.get_by_role("button", name=f"Revoke token {info.id}").click()
    expect(page.get_by_role("status")).to_have_text(f"Token {info.id} is revoked.")
    assert svc.tokens(ROOT, "carol")[0].revoked is not None
