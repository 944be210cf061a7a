"""Public address allocation: a persistent JSON file guarded by an exclusive ``flock``, so
concurrent boots (separate processes) never hand out the same address and ``clean``
returns them. A slot is a public IP (bridge mode) or a forwarded port (user mode)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pcc.common.errors import CapacityError
from pcc.common.locks import file_lock


class AddressPool:
    def __init__(self, state_file: Path, slots: Sequence[str]) -> None:
        self.state_file = state_file
        self.lock_file = state_file.with_suffix(".lock")
        self.slots = list(slots)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        with file_lock(self.lock_file):
            table: dict[str, str] = {}
            if self.state_file.exists() and self.state_file.stat().st_size:
                table = json.loads(self.state_file.read_text())
            before = dict(table)
            yield table
            if table != before:
                tmp = self.state_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
                os.replace(tmp, self.state_file)  # atomic: a crash never leaves half a file

    def allocate(self, owner: str, count: int = 1, usable: Callable[[str], bool] | None = None) -> list[str]:
        """Give ``owner`` ``count`` slots; an owner that already holds slots gets the same ones."""
        with self._locked() as table:
            held = [slot for slot, who in table.items() if who == owner]
            if len(held) >= count:
                return sorted(held, key=self.slots.index)[:count]
            for slot in self.slots:
                if len(held) == count:
                    break
                if slot in table or (usable is not None and not usable(slot)):
                    continue
                table[slot] = owner
                held.append(slot)
            if len(held) < count:
                for slot in held:
                    table.pop(slot, None)
                raise CapacityError(
                    f"no free public address left for {owner!r}: all {len(self.slots)} in the pool are taken"
                )
            return held

    def release(self, owner: str) -> list[str]:
        with self._locked() as table:
            freed = [slot for slot, who in table.items() if who == owner]
            for slot in freed:
                del table[slot]
            return freed

    def held_by(self, owner: str) -> list[str]:
        with self._locked() as table:
            return [slot for slot, who in table.items() if who == owner]

    def allocations(self) -> dict[str, str]:
        with self._locked() as table:
            return dict(table)
