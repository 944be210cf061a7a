"""What `pcc`'s commands print, rendered from the API's documents (so the local CLI and a
client print the same), and the operator's user and token commands over a local store."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pcc.cli import accounts, render
from pcc.cli import main as cli
from pcc.common.errors import UserInputError
from pcc.common.timefmt import human, parse_time

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"


def allocation(site: str = "a", state: str = "scheduled", **fields: Any) -> dict[str, Any]:
    doc = {
        "site": site,
        "cpus": 2,
        "memory_gb": 1.5,
        "ent": False,
        "state": state,
        "reason": "",
        "frontend": "",
        "public_address": "",
        "nodes_up": 0,
        "nodes_total": 2,
        "login_command": "",
    }
    return {**doc, **fields}


def reservation(rid: str = "r00001", **fields: Any) -> dict[str, Any]:
    doc = {
        "id": rid,
        "owner": "alice",
        "title": "",
        "image": "tiny",
        "begin": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T11:00:00Z",
        "state": "scheduled",
        "cancelled": False,
        "allocations": [allocation()],
    }
    return {**doc, **fields}


# -- renderers ------------------------------------------------------------------------------------
def test_document_times_print_as_human_writes_them() -> None:
    assert (
        render.when("2026-12-01T09:00:00Z")
        == human(parse_time("2026-12-01T09:00:00Z"))
        == "2026-12-01 09:00:00Z"
    )
    assert render.when(None) == "-" and render.when(None, "never") == "never"


def test_the_reservation_table_has_a_row_per_reservation_and_its_sites_states() -> None:
    rows = [
        reservation(),
        reservation("r00002", owner="bob", allocations=[allocation(), allocation("b", "running")]),
    ]
    assert render.reservations(rows).splitlines() == [
        "ID       OWNER      IMAGE        STATE      BEGIN                 END                   SITES",
        "r00001   alice      tiny         scheduled  2026-12-01 09:00:00Z  2026-12-01 11:00:00Z  a:scheduled",
        "r00002   bob        tiny         scheduled  2026-12-01 09:00:00Z  2026-12-01 11:00:00Z  "
        "a:scheduled,b:running",
    ]
    assert render.reservations([]) == "no reservations"


def test_a_reservation_shows_its_allocations_how_to_log_in_and_its_events() -> None:
    running = allocation(
        state="running",
        nodes_up=2,
        frontend="r00001-frontend",
        login_command="ssh -p 22100 root@127.0.0.2",
    )
    failed = allocation("b", "failed", reason="the boot never completed")
    doc = reservation(title="lab", state="running", allocations=[running, failed], cancelled=True)
    doc["events"] = [
        {"time": "2026-12-01T08:00:00Z", "site": "a", "from": None, "to": "requested", "why": "reserved"},
        {"time": "2026-12-01T08:00:01Z", "site": "a", "from": "requested", "to": "scheduled", "why": "DAG"},
    ]
    assert render.reservation_detail(doc).splitlines() == [
        "reservation r00001 (lab) by alice: tiny, running",
        "  2026-12-01 09:00:00Z -> 2026-12-01 11:00:00Z  [cancelled]",
        "  site a: running, 2 CPUs, 1.5 GB, nodes up 2/2",
        "    log in: ssh -p 22100 root@127.0.0.2   (frontend r00001-frontend)",
        "  site b: failed, 2 CPUs, 1.5 GB, nodes up 0/2 - the boot never completed",
        "  events:",
        "    2026-12-01 08:00:00Z a: - -> requested  (reserved)",
        "    2026-12-01 08:00:01Z a: requested -> scheduled  (DAG)",
    ]


def test_a_new_reservation_says_where_and_when_and_how_to_watch_it() -> None:
    assert render.reserved(reservation()).splitlines() == [
        "reservation r00001 admitted: tiny at a from 2026-12-01 09:00:00Z to 2026-12-01 11:00:00Z",
        "watch it: pcc show r00001   "
        "(or: condor_q -constraint 'PccReservation == \"r00001\"' -af PccSite PccState PccNodesUp)",
    ]
    assert render.extended(reservation()) == "reservation r00001 now ends at 2026-12-01 11:00:00Z"


def test_a_slot_search_prints_its_windows_or_that_none_fits() -> None:
    doc = {"windows": [{"begin": "2026-12-01T11:00:00Z", "end": "2026-12-01T12:00:00Z"}]}
    assert render.slots(doc).splitlines() == [
        "BEGIN                 END",
        "2026-12-01 11:00:00Z  2026-12-01 12:00:00Z",
    ]
    assert render.slots({"windows": []}).startswith("no window fits")


def test_sites_and_images_print_a_line_each() -> None:
    site = {
        "name": "a",
        "host": "127.0.0.2",
        "health": "down",
        "reason": "connection refused",
        "last_probe": None,
        "capacity": {"cpus": 4, "memory_gb": 2.0, "reserved_cpus": 0, "reserved_memory_gb": 0.0},
        "deployment_type": "libvirt (qemu)",
        "ent": False,
        "pragma_version": "",
        "images": None,
    }
    assert render.sites([site]) == (
        "a            127.0.0.2          4 CPUs      2 GB  down      libvirt (qemu)  (connection refused)"
    )
    rows = [
        {"site": "a", "name": "tiny", "updated": "2026-12-01T08:00:00Z"},
        {"site": "c", "error": "not probed yet"},
    ]
    assert render.images(rows).splitlines() == [
        "a            tiny             ",
        "c            -                not probed yet",
    ]
    assert render.sites([]) == render.images([]) == "no sites configured"


def test_the_users_table_has_a_role_column() -> None:
    rows = [{"name": "alice", "email": "a@lab.example", "ssh_key": KEY, "role": "admin"}]
    assert render.users(rows).splitlines() == [
        "NAME             ROLE   EMAIL                    KEY",
        f"alice            admin  a@lab.example            {KEY[:40]}",
    ]


def test_the_tokens_table_says_each_tokens_state_and_never_shows_a_token() -> None:
    base = {"user": "alice", "created": "2026-12-01T08:00:00Z", "last_used": None, "revoked": None}
    rows = [
        {**base, "id": 1, "label": "laptop", "expires": None, "valid": True, "token": "pcc_SECRET"},
        {**base, "id": 2, "label": "", "expires": "2026-12-01T09:00:00Z", "valid": False},
        {**base, "id": 3, "label": "ci", "expires": None, "revoked": "2026-12-01T08:30:00Z", "valid": False},
    ]
    text = render.tokens(rows)
    assert "pcc_SECRET" not in text
    assert [line.split()[-1] for line in text.splitlines()] == ["STATE", "valid", "expired", "revoked"]
    assert text.splitlines()[1] == (
        "1     alice        laptop               2026-12-01 08:00:00Z  never                 "
        "never                 valid"
    )


# -- secrets from the terminal or stdin ----------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def answers(*typed: str) -> Callable[[str], str]:
    queue = list(typed)
    return lambda prompt="": queue.pop(0)


def test_a_password_on_stdin_is_one_line_without_its_newline() -> None:
    assert accounts.read_password(io.StringIO("a b c d e f\r\nnext\n"), from_stdin=False) == "a b c d e f"
    with pytest.raises(UserInputError, match="no password on stdin"):
        accounts.read_password(io.StringIO(""), from_stdin=False)


def test_on_a_terminal_the_password_is_asked_twice_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts.getpass, "getpass", answers("s3cret-pass", "s3cret-pass"))
    assert accounts.read_password(Terminal(), from_stdin=False) == "s3cret-pass"
    monkeypatch.setattr(accounts.getpass, "getpass", answers("s3cret-pass", "s3cret-typo"))
    with pytest.raises(UserInputError, match="differ; nothing changed"):
        accounts.read_password(Terminal(), from_stdin=False)


def test_password_stdin_reads_a_line_even_on_a_terminal() -> None:
    assert accounts.read_password(Terminal("from-a-pipe\n"), from_stdin=True) == "from-a-pipe"


# -- the operator's users and tokens over a local store ------------------------------------------
class Local:
    def __init__(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.state, self.capsys = state, capsys

    def __call__(self, *argv: str, rc: int = 0) -> tuple[str, str]:
        out = io.StringIO()
        code = cli.main(["--state-dir", str(self.state), *argv], out=out)
        err = self.capsys.readouterr().err
        assert code == rc, err
        return out.getvalue(), err


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Local:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PCC_URL", raising=False)
    monkeypatch.setenv("PCC_USER", "root")
    key = tmp_path / "alice.pub"
    key.write_text(KEY + "\n")
    state = tmp_path / "state"
    state.mkdir()
    run = Local(state, capsys)
    run("users", "add", "alice", "--email", "alice@lab.example", "--key", str(key))
    return run


def test_the_operator_adds_users_and_makes_one_an_admin(local: Local) -> None:
    assert local("users", "add", "carol", "--admin")[0] == "user carol added (admin)\n"
    assert local("users", "role", "alice", "admin")[0] == "user alice is now admin\n"
    listed = local("users", "list")[0].splitlines()
    assert [line.split()[:2] for line in listed] == [["NAME", "ROLE"], ["alice", "admin"], ["carol", "admin"]]


def test_the_operator_sets_a_web_password_from_stdin_and_it_is_never_printed(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    out, err = local("users", "passwd", "alice")
    assert out == "web password of alice set\n" and "horse" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert local("users", "passwd", "alice", rc=2)[1] == "pcc: error: a password has at least 8 characters\n"


def test_a_new_token_is_alone_on_stdout_once_and_listed_without_it(local: Local) -> None:
    out, err = local("tokens", "create", "--user", "alice", "--label", "laptop", "--expires", "30d")
    token = out.strip()
    assert out == f"{token}\n" and token.startswith("pcc_")
    assert err.startswith("pcc: token 1 for alice (laptop), expires ") and "shown this once" in err
    assert token not in err
    listed = local("tokens", "list")[0]
    assert token not in listed
    assert listed.splitlines()[1].split()[:3] == ["1", "alice", "laptop"] and listed.rstrip().endswith(
        "valid"
    )
    assert local("tokens", "revoke", "1")[0] == "token 1 of alice revoked\n"
    assert local("tokens", "list", "--user", "alice")[0].rstrip().endswith("revoked")
    assert local("tokens", "revoke", "9", rc=2)[1] == "pcc: error: no token 9\n"


def test_a_new_tokens_json_carries_the_token(local: Local) -> None:
    doc = json.loads(local("tokens", "create", "--user", "alice", "-o", "json")[0])
    assert doc["token"].startswith("pcc_") and doc["user"] == "alice" and doc["expires"] is None
