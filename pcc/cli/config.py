"""Where a client `pcc` finds its controller and its API token.

The URL: ``--url``, else ``$PCC_URL``, else ``[client] url`` in
``$XDG_CONFIG_HOME/pcc/client.toml`` (default ``~/.config/pcc/client.toml``). ``--config``
or ``--state-dir`` on the command line mean the local store instead (and exclude ``--url``).
No URL at all: the operator's local CLI.

The token: ``$PCC_TOKEN``, else the token file: ``[client] token_file`` in client.toml,
default ``$XDG_CONFIG_HOME/pcc/token``; a token file that its group or others may open is
refused, as ssh refuses such a private key. `pcc login` writes both files."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pcc.common.errors import ConfigError, Unauthenticated, UserInputError
from pcc.common.tomlcfg import TomlReader, read_toml


def config_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/pcc`` (an unset, empty or relative value means ``~/.config``)."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "pcc"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".config" / "pcc"


@dataclass(frozen=True)
class ClientConfig:
    path: Path  # client.toml (it may not exist)
    url: str | None
    token_file: Path
    token_file_set: bool  # named in client.toml (else the default)


def load_config(env: Mapping[str, str]) -> ClientConfig:
    directory = config_dir(env)
    path = directory / "client.toml"
    default_token = directory / "token"
    if not path.exists():
        return ClientConfig(path, None, default_token, False)
    data = read_toml(path, "client configuration")
    unknown = sorted(set(data) - {"client"})
    if unknown:
        raise ConfigError(f"{path}: unknown table or key {unknown[0]!r} (expected [client])")
    table = data.get("client", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [client] must be a table")
    reader = TomlReader(path, table, "client")
    unknown = sorted(set(table) - {"url", "token_file"})
    if unknown:
        raise reader.fail(unknown[0], "unknown key (expected url, token_file)")
    url = reader.get("url", str, None)
    token_file = reader.get("token_file", str, None)
    if token_file is None:
        return ClientConfig(path, url or None, default_token, False)
    token_path = Path(token_file).expanduser()
    return ClientConfig(path, url or None, directory / token_path, True)  # relative: to client.toml's


def check_url(url: str, source: str) -> str:
    """The controller's address: an http(s) URL without a trailing slash, where ``/api/v1``
    is found (an address pasted with ``/api/v1`` or ``/api/docs`` at its end loses it)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserInputError(f"{source}: not an http(s) URL: {url!r} (e.g. https://pcc.example.org)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UserInputError(f"{source}: give the controller's address alone, without user, query or #")
    path = parts.path.rstrip("/")
    for tail in ("/api/v1", "/api/docs", "/api"):
        path = path.removesuffix(tail)
    return f"{parts.scheme}://{parts.netloc}{path}"


def api_url(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The controller's URL to talk to, or None for the local store."""
    local = bool(getattr(args, "config", None) or getattr(args, "state_dir", None))
    if getattr(args, "url", None):
        if local:
            raise UserInputError(
                "--url talks to a controller's API, --config and --state-dir to a local store: "
                "give one or the other"
            )
        return check_url(args.url, "--url")
    if local:
        return None
    if env.get("PCC_URL"):
        return check_url(env["PCC_URL"], "$PCC_URL")
    cfg = load_config(env)
    return check_url(cfg.url, f"{cfg.path}: [client] url") if cfg.url else None


def read_token_file(path: Path) -> str:
    """The token in ``path`` (FileNotFoundError if there is none); refused if its group or
    others may read or write it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"token file {path} is open to its group or others (mode {mode:04o}): "
                f"run `chmod 600 {path}` (and make a new token if someone else may have read it)"
            )
        token = f.read(4096).strip()
    if not token:
        raise ConfigError(f"token file {path} is empty: run `pcc login` again")
    return token


def find_token(url: str, env: Mapping[str, str]) -> str:
    """``$PCC_TOKEN``, else the token file's; none: Unauthenticated saying how to get one."""
    if env.get("PCC_TOKEN", "").strip():
        return env["PCC_TOKEN"].strip()
    cfg = load_config(env)
    try:
        return read_token_file(cfg.token_file)
    except FileNotFoundError:
        named = f" (named in {cfg.path})" if cfg.token_file_set else ""
        raise Unauthenticated(
            f"no API token for {url}: set $PCC_TOKEN, or run `pcc login --url {url}` "
            f"(no token file {cfg.token_file}{named})"
        ) from None


def write_private(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` atomically, the file created with ``mode`` (so a token
    is never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_login(url: str, token: str, env: Mapping[str, str]) -> ClientConfig:
    """Write client.toml (the URL; a token_file it named stays named) and the token file."""
    cfg = load_config(env)
    lines = ["[client]", f"url = {json.dumps(url)}"]
    if cfg.token_file_set:
        lines.append(f"token_file = {json.dumps(str(cfg.token_file))}")
    write_private(cfg.token_file, token + "\n", 0o600)
    write_private(cfg.path, "\n".join(lines) + "\n", 0o600)
    return ClientConfig(cfg.path, url, cfg.token_file, cfg.token_file_set)
