"""Where PCC keeps its state and which HTCondor pool it uses (the pcc.toml file comes later;
until then the environment decides, with documented defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pcc.condor.pool import PersonalPool
from pcc.errors import ConfigError


def default_state_dir() -> Path:
    """``$PCC_STATE_DIR``, else ``/var/lib/pcc`` for root, else ``~/.local/state/pcc``."""
    if env := os.environ.get("PCC_STATE_DIR"):
        return Path(env).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/pcc")
    return Path.home() / ".local" / "state" / "pcc"


@dataclass(frozen=True)
class Settings:
    """What every command needs to know before it does anything."""

    state_dir: Path
    # An existing pool's CONDOR_CONFIG; None means the embedded personal pool.
    external_condor_config: Path | None = None
    poll_seconds: float = 5.0

    @classmethod
    def from_env(cls, state_dir: Path | None = None) -> Settings:
        external = os.environ.get("PCC_CONDOR_CONFIG")
        poll = os.environ.get("PCC_POLL_SECONDS", "5")
        try:
            poll_s = float(poll)
        except ValueError:
            raise ConfigError(f"PCC_POLL_SECONDS: not a number: {poll!r}") from None
        if poll_s <= 0:
            raise ConfigError(f"PCC_POLL_SECONDS: must be > 0, got {poll!r}")
        ext_path = Path(external).expanduser().resolve() if external else None
        if ext_path is not None and not ext_path.is_file():
            raise ConfigError(f"PCC_CONDOR_CONFIG: no such file: {ext_path}")
        return cls(
            state_dir=(state_dir or default_state_dir()).resolve(),
            external_condor_config=ext_path,
            poll_seconds=poll_s,
        )

    @property
    def embedded(self) -> bool:
        return self.external_condor_config is None

    def embedded_pool(self) -> PersonalPool:
        return PersonalPool(
            prefix=self.state_dir / "condor" / "prefix", local_dir=self.state_dir / "condor" / "local"
        )

    @property
    def download_cache(self) -> Path:
        return self.state_dir / "cache"
