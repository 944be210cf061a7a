"""`pcc` as a client: where it finds the controller's URL and its token, how the API's
errors become the exit codes the local CLI has, and what a client imports. (Real HTTP to
`pcc serve` is in tests/integration/test_cli_client.py.)"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pcc.cli import config
from pcc.cli import main as cli
from pcc.cli.client import api_error
from pcc.common.errors import (
    CapacityError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PccError,
    TemporaryError,
    Unauthenticated,
    UserInputError,
)
from pcc.common.timefmt import parse_time

URL = "https://pcc.example.org"


def flags(
    url: str | None = None, config_file: str | None = None, state_dir: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(url=url, config=config_file, state_dir=state_dir)


def home(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def write_client_toml(env: dict[str, str], text: str) -> Path:
    path = config.config_dir(env) / "client.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_token(path: Path, token: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the URL --------------------------------------------------------------------------------------
def test_the_url_comes_from_the_flag_then_pcc_url_then_client_toml(tmp_path: Path) -> None:
    env = home(tmp_path)
    assert config.api_url(flags(), env) is None  # nothing: the operator's local CLI
    write_client_toml(env, '[client]\nurl = "https://from-file.example.org/"\n')
    assert config.api_url(flags(), env) == "https://from-file.example.org"
    env["PCC_URL"] = "http://127.0.0.1:8080"
    assert config.api_url(flags(), env) == "http://127.0.0.1:8080"
    assert config.api_url(flags(url=URL), env) == URL


def test_config_or_state_dir_on_the_command_line_mean_the_local_store(tmp_path: Path) -> None:
    env = {**home(tmp_path), "PCC_URL": URL}
    assert config.api_url(flags(config_file="pcc.toml"), env) is None
    assert config.api_url(flags(state_dir="/var/lib/pcc"), env) is None
    with pytest.raises(UserInputError, match="give one or the other"):
        config.api_url(flags(url=URL, state_dir="/var/lib/pcc"), env)


def test_the_configuration_lives_in_xdg_config_home_else_dot_config(tmp_path: Path) -> None:
    assert config.config_dir({"HOME": "/home/ann", "XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/pcc")
    assert config.config_dir({"HOME": "/home/ann"}) == Path("/home/ann/.config/pcc")
    assert config.config_dir({"HOME": "/home/ann", "XDG_CONFIG_HOME": "relative"}) == Path(
        "/home/ann/.config/pcc"
    )


def test_an_address_loses_its_trailing_slash_and_a_pasted_api_path(tmp_path: Path) -> None:
    assert config.check_url("https://pcc.example.org/", "--url") == URL
    assert config.check_url("https://pcc.example.org/lab/api/v1/", "--url") == f"{URL}/lab"
    assert config.check_url("http://[::1]:8080/api/docs", "--url") == "http://[::1]:8080"
    for bad in ("pcc.example.org", "ftp://pcc.example.org", "https://u:p@pcc.example.org", f"{URL}/?x=1"):
        with pytest.raises(UserInputError, match=r"^--url: "):
            config.check_url(bad, "--url")


def test_a_client_toml_that_is_not_valid_is_an_error_naming_the_file_and_key(tmp_path: Path) -> None:
    env = home(tmp_path)
    path = write_client_toml(env, "[client\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: not valid TOML"):
        config.api_url(flags(), env)
    write_client_toml(env, "[client]\nurl = 8080\n")
    with pytest.raises(ConfigError, match=r"\[client\] url: expected str"):
        config.api_url(flags(), env)
    write_client_toml(env, '[client]\nadress = "https://x"\n')
    with pytest.raises(ConfigError, match=r"\[client\] adress: unknown key"):
        config.api_url(flags(), env)


# -- the token ------------------------------------------------------------------------------------
def test_the_token_comes_from_pcc_token_before_the_token_file(tmp_path: Path) -> None:
    env = home(tmp_path)
    write_token(config.config_dir(env) / "token", "pcc_from_file")
    assert config.find_token(URL, env) == "pcc_from_file"
    assert config.find_token(URL, {**env, "PCC_TOKEN": " pcc_from_env\n"}) == "pcc_from_env"


def test_client_toml_may_name_the_token_file_relative_to_itself(tmp_path: Path) -> None:
    env = home(tmp_path)
    write_client_toml(env, f'[client]\nurl = "{URL}"\ntoken_file = "tokens/lab"\n')
    write_token(config.config_dir(env) / "tokens" / "lab", "pcc_lab")
    assert config.find_token(URL, env) == "pcc_lab"


def test_a_token_file_its_group_or_others_may_read_is_refused(tmp_path: Path) -> None:
    env = home(tmp_path)
    token = write_token(config.config_dir(env) / "token", "pcc_secret", 0o640)
    with pytest.raises(ConfigError) as exc:
        config.find_token(URL, env)
    assert str(exc.value).startswith(
        f"token file {token} is open to its group or others (mode 0640): run `chmod 600 {token}`"
    )
    assert "pcc_secret" not in str(exc.value)
    assert cli.exit_status(exc.value) == cli.ExitStatus.USAGE


def test_no_token_at_all_is_not_logged_in_and_says_how_to_log_in(tmp_path: Path) -> None:
    with pytest.raises(Unauthenticated) as exc:
        config.find_token(URL, home(tmp_path))
    assert f"set $PCC_TOKEN, or run `pcc login --url {URL}`" in str(exc.value)
    assert cli.exit_status(exc.value) == cli.ExitStatus.UNAUTHENTICATED == 5
    assert "  5  not logged in" in cli.EXIT_CODES


def test_a_login_writes_the_url_and_the_token_for_only_you_to_read(tmp_path: Path) -> None:
    env = home(tmp_path)
    saved = config.save_login(URL, "pcc_new", env)
    assert saved.path.read_text() == f'[client]\nurl = "{URL}"\n'
    assert saved.token_file.read_text() == "pcc_new\n"
    for path in (saved.path, saved.token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.path.parent.stat().st_mode) == 0o700
    assert config.api_url(flags(), env) == URL and config.find_token(URL, env) == "pcc_new"
    assert {p.name for p in saved.path.parent.iterdir()} == {"client.toml", "token"}  # no temporary left


def test_a_login_keeps_the_token_file_client_toml_names(tmp_path: Path) -> None:
    env = home(tmp_path)
    named = tmp_path / "secrets" / "pcc-token"
    write_client_toml(env, f'[client]\nurl = "http://old.example.org"\ntoken_file = "{named}"\n')
    config.save_login(URL, "pcc_new", env)
    assert config.load_config(env).token_file == named and named.read_text() == "pcc_new\n"
    assert config.load_config(env).url == URL


# -- the API's errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind", "exception", "exit_status"),
    [
        (400, "UserInputError", UserInputError, 2),
        (401, "Unauthenticated", Unauthenticated, 5),
        (403, "Forbidden", Forbidden, 2),
        (404, "NotFound", NotFound, 2),
        (409, "Conflict", Conflict, 4),
        (422, "ValidationError", UserInputError, 2),
        (500, "PccError", PccError, 1),
        (503, "TemporaryError", TemporaryError, 1),
    ],
)
def test_an_api_error_becomes_the_domain_exception_with_the_local_exit_status(
    status: int, kind: str, exception: type[Exception], exit_status: int
) -> None:
    error = api_error(status, {"error": {"type": kind, "message": "what went wrong"}}, URL)
    assert type(error) is exception
    assert "what went wrong" in str(error)
    assert cli.exit_status(error) == exit_status


def test_a_not_found_keeps_the_services_words() -> None:
    error = api_error(404, {"error": {"type": "NotFound", "message": "no reservation 'r00007'"}}, URL)
    assert str(error) == "no reservation 'r00007'"


def test_a_refused_token_says_where_and_how_to_get_another() -> None:
    error = api_error(401, {"error": {"type": "Unauthenticated", "message": "missing, unknown token"}}, URL)
    assert str(error).startswith(f"{URL} refused the token (missing, unknown token): ")
    assert f"`pcc login --url {URL}`" in str(error)


def test_a_capacity_conflict_keeps_its_next_window_and_pcc_says_when_it_would_fit() -> None:
    body = {
        "error": {
            "type": "CapacityError",
            "message": "site a: not enough CPUs",
            "reason": "site a: not enough CPUs",
            "next_window": {"begin": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"},
        }
    }
    error = api_error(409, body, URL)
    assert isinstance(error, CapacityError)
    assert error.details["next_window"].begin == parse_time("2026-12-01T10:00:00Z")  # type: ignore[attr-defined]
    assert cli.error_text(error) == (
        "site a: not enough CPUs; it would fit from 2026-12-01 10:00:00Z to 2026-12-01 11:00:00Z"
    )
    assert (
        cli.error_text(CapacityError("site a: not enough CPUs", next_window=None))
        == "site a: not enough CPUs"
    )


def test_an_answer_that_is_no_pcc_error_says_the_address_may_be_wrong() -> None:
    for status, body in (
        (502, None),
        (404, {"detail": "Not Found"}),
        (404, {"error": {"message": "Not Found"}}),
    ):
        error = api_error(status, body, URL)
        assert "a PCC controller's address?" in str(error), (status, body)


def test_an_address_nothing_listens_at_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("PCC_TOKEN", "pcc_whatever")
    assert cli.main(["--url", url, "sites"], out=io.StringIO()) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pcc: error: cannot reach {url} (")
    assert "is `pcc serve` running there?" in err[0]


def test_a_client_imports_none_of_the_controllers_dependencies(tmp_path: Path) -> None:
    """A laptop's `pip install 'pcc[client]'` has httpx alone: the store, argon2, FastAPI,
    the HTCondor bindings and the rest are never imported in client mode."""
    code = (
        "import importlib.abc, json, sys\n"
        "HEAVY = {'sqlite_utils', 'argon2', 'fastapi', 'starlette', 'uvicorn', 'jinja2', 'pydantic',\n"
        "         'htcondor', 'htchirp', 'classad', 'paramiko', 'apscheduler', 'prometheus_client'}\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in HEAVY:\n"
        "            raise ImportError(f'a client imported {name}')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from pcc.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(rc, json.dumps(sorted(m for m in sys.modules if m.startswith('pcc.controller.'))))\n"
    )
    url = f"http://127.0.0.1:{closed_port()}"
    for command in (["sites"], ["show", "r00001"], ["slots", "--site", "a:1", "--duration", "1h"]):
        done = subprocess.run(
            [sys.executable, "-c", code, *command],
            env={**os.environ, **home(tmp_path), "PCC_URL": url, "PCC_TOKEN": "pcc_x"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert "a client imported" not in done.stderr, done.stderr
        assert "cannot reach" in done.stderr
        rc, modules = done.stdout.split(" ", 1)
        assert rc == "1"
        assert set(json.loads(modules)) <= {
            "pcc.controller.model",
            "pcc.controller.slots",
            "pcc.controller.admission",
        }
