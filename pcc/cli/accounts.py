"""`pcc users ...`, `pcc tokens ...` and `pcc login`: accounts, API tokens, and a client's
login to a controller. Passwords and tokens are read from the terminal without echo (or as
one line on stdin, for scripts), never taken as arguments, and never printed, except a new
token, once, alone on stdout."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

from pcc.cli import config, render
from pcc.cli.backend import open_backend
from pcc.cli.reservations import command, read_key
from pcc.common.errors import UserInputError
from pcc.common.timefmt import parse_duration

LOOPBACK = ("localhost", "127.0.0.1", "::1")


def read_line(stdin: TextIO, what: str) -> str:
    """One line of ``stdin`` without its line ending (a script's way to pass a secret)."""
    line = stdin.readline()
    value = line.rstrip("\r\n")
    if not value:
        raise UserInputError(f"no {what} on stdin (give it as one line)")
    return value


def read_password(stdin: TextIO, from_stdin: bool) -> str:
    """A new password: asked twice on a terminal; else (or with ``--password-stdin``) one line."""
    if from_stdin or not stdin.isatty():
        return read_line(stdin, "password")
    first = getpass.getpass("new web password: ")
    if getpass.getpass("the same again: ") != first:
        raise UserInputError("the two passwords differ; nothing changed")
    if not first:
        raise UserInputError("no password given; nothing changed")
    return first


def read_token(stdin: TextIO) -> str:
    if not stdin.isatty():
        return read_line(stdin, "token").strip()
    token = getpass.getpass("API token (from `pcc tokens create` or the web page): ").strip()
    if not token:
        raise UserInputError("no token given")
    return token


# -- users ------------------------------------------------------------------------------------
def cmd_users_add(args: argparse.Namespace, out: TextIO) -> int:
    role = "admin" if args.make_admin else "user"
    user = open_backend(args).add_user(args.name, args.email or "", read_key(args.key), role)
    return render.emit(out, args, user, lambda: render.user_added(user))


def cmd_users_list(args: argparse.Namespace, out: TextIO) -> int:
    rows = open_backend(args).users()
    return render.emit(out, args, rows, lambda: render.users(rows))


def cmd_users_passwd(args: argparse.Namespace, out: TextIO) -> int:
    api = open_backend(args)
    password = read_password(sys.stdin, args.password_stdin)
    user = api.update_user(args.name, password=password)
    return render.emit(out, args, user, lambda: f"web password of {user['name']} set")


def cmd_users_role(args: argparse.Namespace, out: TextIO) -> int:
    user = open_backend(args).update_user(args.name, role=args.role)
    return render.emit(out, args, user, lambda: f"user {user['name']} is now {user['role']}")


# -- tokens -----------------------------------------------------------------------------------
def cmd_tokens_create(args: argparse.Namespace, out: TextIO) -> int:
    expires = parse_duration(args.expires) if args.expires else None
    doc = open_backend(args).create_token(args.owner, expires, args.label or "")
    if args.output == "json":
        return render.emit(out, args, doc, lambda: "")
    print(doc["token"], file=out)  # alone on its line: `TOKEN=$(pcc tokens create)` works
    print(render.new_token_note(doc), file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace, out: TextIO) -> int:
    rows = open_backend(args).tokens(args.owner)
    return render.emit(out, args, rows, lambda: render.tokens(rows))


def cmd_tokens_revoke(args: argparse.Namespace, out: TextIO) -> int:
    doc = open_backend(args).revoke_token(args.id)
    return render.emit(out, args, doc, lambda: f"token {doc['id']} of {doc['user']} revoked")


# -- login --------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.cli.client import ApiBackend

    env = os.environ
    url = config.check_url(args.login_url, "--url") if args.login_url else config.api_url(args, env)
    if url is None:
        raise UserInputError("name the controller: pcc login --url https://pcc.example.org")
    if urlsplit(url).scheme == "http" and urlsplit(url).hostname not in LOOPBACK:
        print(
            f"pcc: warning: {url} is plain http: the token crosses the network unencrypted", file=sys.stderr
        )
    token = read_token(sys.stdin)
    api = ApiBackend(url, token)
    try:
        me = api.me()
    finally:
        api.close()
    saved = config.save_login(url, token, env)
    doc: dict[str, Any] = {
        "url": url,
        "user": me,
        "config": str(saved.path),
        "token_file": str(saved.token_file),
    }
    return render.emit(
        out,
        args,
        doc,
        lambda: (
            f"logged in to {url} as {me['name']} ({me['role']}); the URL is in {saved.path}, "
            f"the token in {saved.token_file} (mode 0600)"
        ),
    )


def add_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="users: SSH keys, web passwords, roles")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = command(usub, "add", cmd_users_add, "add a user")
    p.add_argument("name")
    p.add_argument("--email")
    p.add_argument("--key", help="SSH public key file")
    p.add_argument("--admin", dest="make_admin", action="store_true", help="an admin (sees and manages all)")
    command(usub, "list", cmd_users_list, "list users and their roles")
    p = command(
        usub,
        "passwd",
        cmd_users_passwd,
        "set a user's web login password (asked twice on a terminal, else one line on stdin)",
    )
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read it as one line from stdin")
    p = command(usub, "role", cmd_users_role, "make a user an admin, or a user again (admins only)")
    p.add_argument("name")
    p.add_argument("role", choices=("user", "admin"))

    tokens = sub.add_parser("tokens", help="API tokens (for `pcc --url` and scripts)")
    tsub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    p = command(tsub, "create", cmd_tokens_create, "make an API token; it is printed once, alone on stdout")
    p.add_argument("--user", dest="owner", metavar="NAME", help="whose (default: yours; others': an admin)")
    p.add_argument("--expires", metavar="DURATION", help="lifetime, e.g. 30d, 12h (default: no expiry)")
    p.add_argument("--label", help="what it is for, e.g. laptop")
    p = command(tsub, "list", cmd_tokens_list, "API tokens (never the tokens themselves)")
    p.add_argument("--user", dest="owner", metavar="NAME", help="only this user's")
    p = command(tsub, "revoke", cmd_tokens_revoke, "revoke an API token")
    p.add_argument("id", type=int)

    p = command(
        sub,
        "login",
        cmd_login,
        "store a controller's URL and your API token (read without echo, or from stdin) for `pcc`",
    )
    p.add_argument(
        "--url", dest="login_url", help="the controller's address (default: $PCC_URL or client.toml)"
    )
