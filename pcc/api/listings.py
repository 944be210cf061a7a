"""JSON bodies for the API, and the listings it keeps encoded between requests.

A user's list of reservations is what clients poll (the CLI's ``pcc list``, scripts, the web
page every few seconds), and building it is most of what a request costs: the store's rows
to objects, the documents, the JSON. The store's :meth:`~pcc.controller.store.Store.revision`
changes whenever any reservation does, so a listing encoded at one revision is served as it
is until the revision moves; most polls then cost a lookup here and one indexed read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import anyio.to_thread
import orjson
from fastapi import Response

JSON = "application/json"
BUDGET_BYTES = 32 * 2**20  # what the encoded listings may hold in all


class Json(Response):
    """A JSON response encoded by orjson (several times faster than the standard library's
    for the documents :mod:`pcc.controller.views` builds; the same compact output)."""

    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class Listings:
    """Encoded listings by what was asked (who, with which filters) and the revision they
    were built at, least recently used dropped first past :data:`BUDGET_BYTES`.

    Used from the event loop only (no lock): a miss is built in a worker thread, with that
    thread's own store connection. The revision is read before the listing is built, so a
    change committed meanwhile only makes the next request build again, never serves a
    stale listing.
    """

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = budget
        self.size = 0
        self._entries: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()

    async def get(self, key: Hashable, revision: int, build: Callable[[], Any]) -> Response:
        """The listing for ``key`` at ``revision``: kept, or ``build()`` encoded and kept."""
        kept = self._entries.get(key)
        if kept is not None and kept[0] == revision:
            self._entries.move_to_end(key)
            return Response(kept[1], media_type=JSON)
        body: bytes = await anyio.to_thread.run_sync(lambda: orjson.dumps(build()))
        self._put(key, revision, body)
        return Response(body, media_type=JSON)

    def _put(self, key: Hashable, revision: int, body: bytes) -> None:
        old = self._entries.get(key)
        if old is not None and old[0] > revision:
            return  # built meanwhile at a later revision (revisions only grow)
        if old is not None:
            del self._entries[key]
            self.size -= len(old[1])
        if len(body) > self.budget:
            return
        self._entries[key] = (revision, body)
        self.size += len(body)
        while self.size > self.budget:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
