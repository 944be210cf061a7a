"""The API's kept listings: served as they are while the store's revision stays, built again
when it moves, never replaced by an older build, and held within their byte budget."""

from __future__ import annotations

from typing import Any

import anyio
import orjson

from pcc.api.listings import Json, Listings


class Builds:
    """A listing builder that counts its calls and says which call built what."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        return [{"call": self.calls, "name": "ä"}]


def fetch(listings: Listings, key: object, revision: int, build: Builds) -> Any:
    async def get() -> Any:
        return orjson.loads((await listings.get(key, revision, build)).body)

    return anyio.run(get)


def test_a_listing_is_built_once_per_revision() -> None:
    listings, build = Listings(), Builds()
    assert fetch(listings, "alice", 1, build) == [{"call": 1, "name": "ä"}]
    assert fetch(listings, "alice", 1, build) == [{"call": 1, "name": "ä"}]
    assert build.calls == 1
    assert fetch(listings, "alice", 2, build) == [{"call": 2, "name": "ä"}]  # the store changed
    assert build.calls == 2


def test_each_key_has_its_own_listing() -> None:
    listings, build = Listings(), Builds()
    fetch(listings, ("alice", False), 1, build)
    assert fetch(listings, ("bob", False), 1, build) == [{"call": 2, "name": "ä"}]
    assert fetch(listings, ("alice", False), 1, build) == [{"call": 1, "name": "ä"}]


def test_an_older_build_finishing_late_does_not_replace_a_newer_one() -> None:
    listings = Listings()
    listings._put("k", 5, b"[5]")
    listings._put("k", 4, b"[4]")  # a request that read revision 4 and built slowly
    assert fetch(listings, "k", 5, Builds()) == [5]


def test_the_least_recently_used_listings_go_past_the_budget() -> None:
    listings, build = Listings(budget=75), Builds()
    for key in ("a", "b", "c"):
        fetch(listings, key, 1, build)  # 24 bytes each: three fit
    fetch(listings, "a", 1, build)  # a used again: b is now the oldest
    fetch(listings, "d", 1, build)
    assert listings.size <= 75
    assert build.calls == 4
    fetch(listings, "a", 1, build)
    assert build.calls == 4  # kept
    fetch(listings, "b", 1, build)
    assert build.calls == 5  # dropped, built again
    listings._put("huge", 1, b"x" * 76)
    assert "huge" not in listings._entries and listings.size <= 100


def test_json_bodies_are_compact_utf8() -> None:
    assert Json({"a": [1, 2.5, None, True], "b": "ä"}).body == '{"a":[1,2.5,null,true],"b":"ä"}'.encode()
