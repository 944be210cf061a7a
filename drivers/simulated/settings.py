"""``[driver.simulated]``: how long a simulated node takes to boot, how often a boot fails,
and where the simulated back-end keeps its state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import DriverSettings

STATE_FILE = "simulated.json"  # under the site's staging directory, by default


@dataclass(frozen=True)
class SimulatedSettings(DriverSettings):
    """``[driver.simulated]`` (all optional):

    * ``boot_s`` — seconds a node takes from starting to running (0: at once; default 0);
    * ``failure_rate`` — the probability, 0 to 1, that a cluster's boot fails (default 0).
      Whether a given cluster fails is decided by a hash of ``seed`` and its name, so a run
      is reproducible: the same names fail again with the same settings;
    * ``seed`` — an integer mixed into that hash (default 0), to draw other clusters;
    * ``state_file`` — the JSON file that is the simulated back-end (default
      ``<staging>/simulated.json``; relative paths are relative to the site file);
    * ``wait`` — ``create_cluster`` returns once every node is running, as the real drivers
      do (default true); false returns at once with the nodes still booting, so that a
      bench need not hold the site's boot lock for ``boot_s``.
    """

    boot_s: float = 0.0
    failure_rate: float = 0.0
    seed: int = 0
    state_file: Path | None = None
    wait: bool = True

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        boot_s = reader.get("boot_s", float, cls.boot_s)
        if not math.isfinite(boot_s) or boot_s < 0:
            raise reader.fail("boot_s", f"must be >= 0 seconds, got {boot_s}")
        rate = reader.get("failure_rate", float, cls.failure_rate)
        if not 0.0 <= rate <= 1.0:  # NaN fails this too
            raise reader.fail("failure_rate", f"must be within 0 and 1, got {rate}")
        state_file = None
        if "state_file" in reader.data:
            if not reader.get("state_file", str):
                raise reader.fail("state_file", "must be a file's path")
            state_file = reader.directory("state_file")
        return cls(
            boot_s=boot_s,
            failure_rate=rate,
            seed=reader.get("seed", int, cls.seed),
            state_file=state_file,
            wait=reader.get("wait", bool, cls.wait),
        )
