"""`pcc` as a client of a controller's REST API, run as a scientist runs it on a laptop: the
real `pcc` program with only a URL and a token (no state directory, no store), against
`pcc serve` over the real pool and SSH sites. It prints what the operator's local CLI prints
for the same things. No cluster boots here: every reservation begins tomorrow or later."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcc.common.timefmt import iso, parse_time
from pcc.controller.model import TERMINAL
from pcc.controller.service import Actor
from pcc.dev.controller_env import Controller, Served

pytestmark = [pytest.mark.condor, pytest.mark.slow]

PCC = Path(sys.executable).parent / "pcc"
ROOT = Actor("root", admin=True)
DAY = 86_400


@dataclass
class People:
    """alice and bob (users) and carol (an admin), each with an API token."""

    tokens: dict[str, str]


def laptop_env(home: Path) -> dict[str, str]:
    """A laptop's environment: no PCC_* settings, its own home and configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCC_")}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PCC), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def people(controller: Controller, served: Served) -> Iterator[People]:
    """The users, made by the operator; afterwards every reservation is cancelled and its DAG
    gone from the session's pool before `pcc serve` stops."""
    svc = controller.service
    svc.add_user(ROOT, "alice", "alice@lab.example", controller.user_public_key())
    svc.add_user(ROOT, "bob", "bob@lab.example", controller.user_public_key())
    svc.add_user(ROOT, "carol", "carol@lab.example", admin=True)
    yield People({name: svc.create_token(ROOT, name, label="test")[0] for name in ("alice", "bob", "carol")})
    rids = [r.id for r in svc.reservations(ROOT)]
    for rid in rids:
        res = svc.reservation(ROOT, rid)
        if not res.cancelled and not all(a.state in TERMINAL for a in res.allocations):
            svc.cancel(ROOT, rid)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not any(
            controller.condor_q("-constraint", f'JobBatchName == "{r}"', "-af", "ClusterId") for r in rids
        ):
            return
        time.sleep(1)
    raise AssertionError(f"the cancelled reservations' DAGs are still queued: {served.log()}")


class Client:
    """`pcc` on a laptop: PCC_URL and a user's PCC_TOKEN; `pcc --config` as the operator."""

    def __init__(self, served: Served, controller: Controller, people: People, home: Path) -> None:
        self.served, self.controller, self.people, self.home = served, controller, people, home

    def as_(self, user: str | None, *args: str, token: str | None = None, stdin: str | None = None) -> Any:
        env = {**laptop_env(self.home), "PCC_URL": self.served.url}
        if user or token:
            env["PCC_TOKEN"] = token or self.people.tokens[user or ""]
        return run(list(args), env, stdin)

    def operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PCC_URL", "PCC_TOKEN", "PCC_USER")}
        return run(["--config", str(self.controller.config), *args], env)

    def ok(self, user: str | None, *args: str) -> str:
        done = self.as_(user, *args)
        assert done.returncode == 0, f"{done.stderr}\n{self.served.log()}"
        return str(done.stdout)

    def operator_ok(self, *args: str) -> str:
        done = self.operator(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def cli(served: Served, controller: Controller, people: People, tmp_path: Path) -> Client:
    return Client(served, controller, people, tmp_path)


def tomorrow(hours: int = 0) -> str:
    """A whole hour about a day ahead (plus ``hours``), ISO 8601."""
    return iso((int(time.time()) // 3600 + 24 + hours) * 3600)


def reserve(cli: Client, begin: str, *extra: str) -> dict[str, Any]:
    out = cli.ok(
        "alice", "reserve", "--site", "a:1", "--image", "tiny", "--begin", begin, *extra, "-o", "json"
    )
    rid = json.loads(out)["id"]
    # `pcc serve` submits its DAG at once (requested -> scheduled); compare once it has.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = json.loads(cli.ok("alice", "show", rid, "-o", "json"))
        if all(a["state"] == "scheduled" for a in doc["allocations"]):
            return doc
        time.sleep(0.5)
    raise AssertionError(f"{rid} was never scheduled: {cli.served.log()}")


@pytest.fixture(scope="module")
def booked(
    served: Served, controller: Controller, people: People, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """alice's reservation at site a, tomorrow for an hour, made through the API."""
    cli = Client(served, controller, people, tmp_path_factory.mktemp("laptop"))
    return str(reserve(cli, tomorrow(), "--duration", "1h", "--title", "through the API")["id"])


def test_a_reservation_through_the_api_says_it_was_admitted_as_the_local_cli_does(cli: Client) -> None:
    begin = tomorrow(30)
    out = cli.ok("alice", "reserve", "--site", "a:1", "--image", "tiny", "--begin", begin, "--duration", "1h")
    first = out.splitlines()[0]
    rid = first.split()[1]
    begin_h = begin.replace("T", " ")
    end_h = iso(parse_time(begin) + 3600).replace("T", " ")
    assert first == f"reservation {rid} admitted: tiny at a from {begin_h} to {end_h}"
    assert out.splitlines()[1].startswith(f"watch it: pcc show {rid}   (or: condor_q -constraint")


def test_show_through_the_api_prints_what_the_operator_sees(cli: Client, booked: str) -> None:
    remote = json.loads(cli.ok("alice", "show", booked, "-o", "json"))
    assert remote == json.loads(cli.operator_ok("show", booked, "-o", "json"))
    assert remote["owner"] == "alice" and remote["title"] == "through the API"
    assert [e["to"] for e in remote["events"]] == ["requested", "scheduled"]
    text = cli.ok("alice", "show", booked)
    assert text == cli.operator_ok("show", booked)
    assert text.startswith(f"reservation {booked} (through the API) by alice: tiny, scheduled\n")


def test_list_through_the_api_prints_what_the_operator_sees_of_alice(cli: Client, booked: str) -> None:
    remote = cli.ok("alice", "list")
    assert remote == cli.operator_ok("list", "--user", "alice")
    assert remote.splitlines()[0].split() == ["ID", "OWNER", "IMAGE", "STATE", "BEGIN", "END", "SITES"]
    assert any(line.startswith(f"{booked:<8} alice") for line in remote.splitlines())
    assert json.loads(cli.ok("alice", "list", "-o", "json")) == json.loads(
        cli.operator_ok("list", "--user", "alice", "-o", "json")
    )


def test_sites_and_images_through_the_api_are_the_operators(cli: Client, people: People) -> None:
    sites = cli.ok("alice", "sites")
    assert sites == cli.operator_ok("sites")
    assert [line.split()[0] for line in sites.splitlines()] == ["a", "b", "c"]
    assert json.loads(cli.ok("alice", "images", "-o", "json")) == json.loads(
        cli.operator_ok("images", "-o", "json")
    )
    assert cli.ok("alice", "images") == cli.operator_ok("images")


def test_slots_through_the_api_are_the_operators_and_avoid_the_reservation(cli: Client, booked: str) -> None:
    res = json.loads(cli.ok("alice", "show", booked, "-o", "json"))
    ask = ["slots", "--site", "a:4", "--duration", "1h", "--not-before", res["begin"], "--count", "2"]
    remote = cli.ok("alice", *ask)
    assert remote == cli.operator_ok(*ask)
    windows = json.loads(cli.ok("alice", *ask, "-o", "json"))["windows"]
    assert windows[0]["begin"] == res["end"]  # all of site a's 4 CPUs: once alice's hour is over
    assert remote.splitlines()[1].startswith(res["end"].replace("T", " "))


def test_extend_by_an_hour_through_the_api_moves_the_end_the_operator_sees(cli: Client, booked: str) -> None:
    before = json.loads(cli.operator_ok("show", booked, "-o", "json"))["end"]
    later = iso(parse_time(before) + 3600)
    assert cli.ok("alice", "extend", booked, "--by", "1h").strip() == (
        f"reservation {booked} now ends at {later.replace('T', ' ')}"
    )
    assert json.loads(cli.operator_ok("show", booked, "-o", "json"))["end"] == later
    not_later = cli.as_("alice", "extend", booked, "--until", before)
    assert (not_later.returncode, not_later.stderr) == (
        2,
        "pcc: error: an extension must move the end later\n",
    )


def test_a_reservation_that_does_not_fit_exits_4_and_says_when_it_would(cli: Client, booked: str) -> None:
    res = json.loads(cli.ok("alice", "show", booked, "-o", "json"))
    ask = ["reserve", "--site", "a:4", "--image", "tiny", "--begin", res["begin"], "--duration", "1h"]
    remote = cli.as_("alice", *ask)
    local = cli.operator(*ask, "--user", "alice")
    assert (remote.returncode, local.returncode) == (4, 4)
    assert remote.stderr == local.stderr
    assert f"it would fit from {res['end'].replace('T', ' ')}" in remote.stderr


def test_cancel_through_the_api_cancels_for_the_operator_too(cli: Client) -> None:
    rid = reserve(cli, tomorrow(48), "--duration", "1h")["id"]
    assert (
        cli.ok("alice", "cancel", rid).strip() == f"reservation {rid} cancelled; its clusters are torn down"
    )
    shown = json.loads(cli.operator_ok("show", rid, "-o", "json"))
    assert shown["cancelled"] is True
    assert [a["state"] for a in shown["allocations"]] == ["cancelled"]


def test_another_user_is_told_there_is_no_such_reservation(cli: Client, booked: str) -> None:
    for command in (["show", booked], ["cancel", booked], ["extend", booked, "--by", "1h"]):
        done = cli.as_("bob", *command)
        assert done.returncode == 2
        assert done.stderr == f"pcc: error: no reservation {booked!r}\n"
    assert cli.ok("bob", "list") == "no reservations\n"


def test_an_admins_token_changes_anothers_reservation_only_with_admin(cli: Client, booked: str) -> None:
    refused = cli.as_("carol", "extend", booked, "--by", "1m")
    assert (refused.returncode, refused.stderr) == (2, f"pcc: error: no reservation {booked!r}\n")
    assert booked in cli.ok("carol", "list", "--all")
    assert cli.ok("carol", "list") == "no reservations\n"  # her own: none


def test_a_wrong_token_exits_5_and_says_the_controller_refused_it(cli: Client) -> None:
    done = cli.as_(None, "list", token="pcc_not-a-token")
    assert done.returncode == 5
    assert done.stderr.startswith(f"pcc: error: {cli.served.url} refused the token (")
    assert "pcc tokens create" in done.stderr and done.stdout == ""


def test_no_token_at_all_exits_5_and_says_how_to_log_in(cli: Client) -> None:
    done = cli.as_(None, "sites")
    assert done.returncode == 5
    assert f"run `pcc login --url {cli.served.url}`" in done.stderr


def test_an_address_nothing_answers_at_exits_1_naming_it(cli: Client) -> None:
    env = {**laptop_env(cli.home), "PCC_URL": "http://127.0.0.1:9", "PCC_TOKEN": cli.people.tokens["alice"]}
    done = run(["sites"], env)
    assert done.returncode == 1
    assert done.stderr.startswith("pcc: error: cannot reach http://127.0.0.1:9 (")


def test_login_stores_the_url_and_the_token_for_only_you_to_read(cli: Client) -> None:
    env = laptop_env(cli.home)
    done = run(["login", "--url", cli.served.url], env, stdin=cli.people.tokens["alice"] + "\n")
    assert done.returncode == 0, done.stderr
    config, token = cli.home / ".config" / "pcc" / "client.toml", cli.home / ".config" / "pcc" / "token"
    assert done.stdout.startswith(f"logged in to {cli.served.url} as alice (user); ")
    assert cli.people.tokens["alice"] not in done.stdout + done.stderr
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(config.stat().st_mode) == 0o600
    assert token.read_text().strip() == cli.people.tokens["alice"]
    assert config.read_text() == f'[client]\nurl = "{cli.served.url}"\n'
    assert run(["sites"], env).stdout == cli.operator_ok("sites")  # no PCC_URL, no PCC_TOKEN
    token.chmod(0o644)
    loose = run(["sites"], env)
    assert loose.returncode == 2
    assert (
        f"token file {token} is open to its group or others (mode 0644): run `chmod 600 {token}`"
        in loose.stderr
    )


def test_login_with_a_wrong_token_writes_nothing(cli: Client) -> None:
    done = run(["login", "--url", cli.served.url], laptop_env(cli.home), stdin="pcc_wrong\n")
    assert done.returncode == 5
    assert not (cli.home / ".config" / "pcc").exists()


def test_tokens_through_the_api_are_made_shown_once_listed_and_revoked(cli: Client) -> None:
    made = cli.as_("alice", "tokens", "create", "--label", "laptop", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("pcc_")
    assert "shown this once" in made.stderr and token not in made.stderr
    listed = cli.ok("alice", "tokens", "list")
    assert token not in listed
    assert listed.splitlines()[0].split() == [
        "ID",
        "USER",
        "LABEL",
        "CREATED",
        "EXPIRES",
        "LAST-USED",
        "STATE",
    ]
    row = next(line for line in listed.splitlines() if " laptop " in line)
    tid = row.split()[0]
    assert row.split()[1] == "alice" and row.endswith(" valid")
    assert cli.as_(None, "sites", token=token).returncode == 0
    assert cli.ok("alice", "tokens", "revoke", tid).strip() == f"token {tid} of alice revoked"
    assert cli.as_(None, "sites", token=token).returncode == 5
    assert next(
        line for line in cli.ok("alice", "tokens", "list").splitlines() if " laptop " in line
    ).endswith(" revoked")


def test_a_new_tokens_json_is_the_api_document_with_the_token(cli: Client) -> None:
    doc = json.loads(cli.ok("carol", "tokens", "create", "--user", "bob", "-o", "json"))
    assert doc["user"] == "bob" and doc["token"].startswith("pcc_") and doc["valid"] is True
    assert cli.as_(None, "list", token=doc["token"]).returncode == 0


def test_users_through_the_api_are_an_admins_business(cli: Client, controller: Controller) -> None:
    refused = cli.as_("alice", "users", "list")
    assert (refused.returncode, refused.stderr) == (2, "pcc: error: only an admin may list users\n")
    key = Path(f"{controller.user_key}.pub")
    assert cli.ok("carol", "users", "add", "dave", "--email", "dave@lab.example", "--key", str(key)) == (
        "user dave added\n"
    )
    listed = cli.ok("carol", "users", "list")
    assert listed == cli.operator_ok("users", "list")
    assert listed.splitlines()[0].split() == ["NAME", "ROLE", "EMAIL", "KEY"]
    assert next(line for line in listed.splitlines() if line.startswith("carol ")).split()[1] == "admin"
    assert cli.ok("carol", "users", "role", "dave", "admin") == "user dave is now admin\n"
    assert cli.ok("carol", "users", "role", "dave", "user") == "user dave is now user\n"


def test_a_web_password_is_read_from_stdin_and_never_printed(cli: Client, controller: Controller) -> None:
    done = cli.as_("bob", "users", "passwd", "bob", stdin="correct horse battery\n")
    assert (done.returncode, done.stdout) == (0, "web password of bob set\n"), done.stderr
    assert "correct horse" not in done.stderr
    assert controller.service.login("bob", "correct horse battery")[1].name == "bob"
    short = cli.as_("bob", "users", "passwd", "bob", stdin="short\n")
    assert (short.returncode, short.stderr) == (2, "pcc: error: a password has at least 8 characters\n")


def test_without_a_url_pcc_is_the_operators_local_cli(cli: Client, booked: str) -> None:
    env = {**laptop_env(cli.home), "PCC_CONFIG": str(cli.controller.config)}
    done = run(["list", "--all"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == cli.operator_ok("list", "--all")
    assert booked in done.stdout


def test_a_reservation_the_operator_makes_for_alice_is_hers_through_the_api(cli: Client) -> None:
    ask = ["reserve", "--site", "b:1", "--image", "tiny", "--begin", tomorrow(60), "--duration", "1h"]
    made = json.loads(cli.operator_ok(*ask, "--user", "alice", "-o", "json"))
    assert json.loads(cli.ok("alice", "show", made["id"], "-o", "json"))["owner"] == "alice"
    refused = cli.operator("cancel", made["id"])  # the operator's own name: not without --admin
    assert (refused.returncode, refused.stderr) == (2, f"pcc: error: no reservation {made['id']!r}\n")
    assert cli.operator_ok("cancel", made["id"], "--user", "alice").startswith(
        f"reservation {made['id']} cancelled"
    )
