"""Typed, validated reading of TOML configuration files (site and controller alike):
every error is one line naming the file, the table and the key."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pcc.common.errors import ConfigError

T = TypeVar("T")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file as data (never executed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


class TomlReader:
    """Typed access to a TOML table with errors that name ``file: [table] key``."""

    def __init__(self, path: Path, data: Mapping[str, Any], table: str = "") -> None:
        self.path, self.data, self.table = path, data, table

    def where(self, key: str) -> str:
        return f"{self.path}: [{self.table}] {key}" if self.table else f"{self.path}: {key}"

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")

    def get(
        self,
        key: str,
        kind: type[T],
        default: Any = ...,
    ) -> T:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "missing")
            return default  # type: ignore[no-any-return]
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.fail(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value  # type: ignore[no-any-return]

    def positive(self, key: str, default: Any = ..., allow_zero: bool = False) -> int:
        value = self.get(key, int, default)
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
        return value

    def sub(self, key: str, required: bool = True) -> TomlReader | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "missing table")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return TomlReader(self.path, value, f"{self.table}.{key}" if self.table else key)

    def address(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.fail(key, f"not an IP address: {value!r}") from None

    def directory(self, key: str) -> Path:
        value = Path(self.get(key, str)).expanduser()
        if not value.is_absolute():
            value = (self.path.parent / value).resolve()
        return value
