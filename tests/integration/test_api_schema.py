"""The API keeps the promises its OpenAPI document makes: schemathesis generates requests for
every operation from /api/openapi.json, served over real HTTP by uvicorn (as `pcc serve`
runs it), as an admin, as a user and with no token; every answer must be a documented
status with a documented content type and body, and never a 5xx. No pool is needed: the
store is seeded as the probes and a few users would leave it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pcc.api.server import ApiServer
from pcc.common.timefmt import iso
from pcc.controller.service import Actor, SiteRequest
from pcc.controller.settings import ApiConfig
from tests.unit.test_api_app import Seeded, seed

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation, per identity and generation mode (x3 for the positive cases of
# requests with a body): about 1,700 cases in all, in well under a minute.
BUDGET: dict[tuple[str, GenerationMode], int] = {
    ("admin", GenerationMode.POSITIVE): 30,
    ("admin", GenerationMode.NEGATIVE): 10,
    ("user", GenerationMode.POSITIVE): 15,
    ("nobody", GenerationMode.POSITIVE): 3,
}
ROOT = Actor("root", admin=True)
DROP = object()  # a steered field left out


@dataclass
class Running:
    url: str
    seeded: Seeded


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The app on uvicorn on a free loopback port, over a store with two sites whose images
    are known (and one never probed), three users, their tokens (one revoked) and a few
    reservations (one cancelled)."""
    seeded = seed(tmp_path_factory.mktemp("api-schema"))
    seeded.settings = replace(seeded.settings, api=ApiConfig("127.0.0.1", 0))
    svc = seeded.service
    day = (int(time.time()) // 3600 + 24) * 3600
    for owner, site, offset in (("alice", "a", 0), ("alice", "b", 2), ("bob", "a", 4)):
        begin = day + offset * 3600
        svc.reserve(ROOT, "tiny", [SiteRequest(site, 2, 1.0)], begin, begin + 3600, owner=owner)
    svc.cancel(ROOT, svc.reservations(Actor("bob"))[0].id)
    svc.revoke_token(ROOT, svc.create_token(ROOT, user="alice", label="old")[1].id)
    server = ApiServer(seeded.settings)
    url = server.start()
    try:
        yield Running(url, seeded)
    finally:
        server.stop()


def steer(schema: schemathesis.BaseSchema, running: Running) -> None:
    """Half the generated requests name what the store holds (its sites, image, users,
    reservations and tokens) so that they get past "no such thing" into the service's
    checks and the documents it returns; everything else stays as schemathesis made it."""
    svc = running.seeded.service
    rids = [r.id for r in svc.reservations(ROOT)]
    names = {"rid": rids, "name": ["a", "b", "c", "alice", "bob", "boss"], "token_id": [1, 2, 3, 5, 8]}
    day = (int(time.time()) // 3600 + 24) * 3600
    begins = st.sampled_from(["now", iso(day + 600), iso(day + 30 * 3600)])
    sites = st.permutations(["a", "b", "c"])

    ends = st.integers(day - 86_400, day + 2 * 366 * 86_400).map(iso)
    durations = st.one_of(
        st.integers(-(2**70), 2**70),  # what JSON allows, not only what hypothesis favours
        st.integers(),
        st.text(max_size=32),
        st.sampled_from(["90m", "2d", "400d", "9999999999d", 0, -1, 2**31, 10**12, 2**63]),
    )
    # Each, both or neither: POST /reservations wants exactly one.
    one_of_end_or_duration = {
        "end": st.one_of(st.just(DROP), ends),
        "duration": st.one_of(st.just(DROP), durations),
    }

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext, params: dict[str, Any]) -> Any:
        if not params:
            return st.just(params)
        choices = {k: st.sampled_from([v, *names[k]]) for k, v in params.items() if k in names}
        return st.fixed_dictionaries(choices).map(lambda chosen: {**params, **chosen})

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
        op = context.operation
        if op is None or not isinstance(body, dict):
            return st.just(body)
        route = (op.method.upper(), op.path.removeprefix("/api/v1"))
        overrides: dict[str, st.SearchStrategy[Any]] = {}
        if route == ("POST", "/reservations") and isinstance(body.get("allocations"), list):
            allocations = [a for a in body["allocations"] if isinstance(a, dict)][:3]
            overrides = {
                "image": st.just("tiny"),
                "begin": begins,
                "allocations": sites.map(
                    lambda ns: [{**a, "site": n} for a, n in zip(allocations, ns, strict=False)]
                ),
                **one_of_end_or_duration,
            }
        elif route == ("PATCH", "/reservations/{rid}"):
            overrides = {"end": ends}
        elif route == ("POST", "/slots/search") and isinstance(body.get("sites"), list):
            demands = [d for d in body["sites"] if isinstance(d, dict)][:3]
            overrides = {
                "sites": sites.map(lambda ns: [{**d, "site": n} for d, n in zip(demands, ns, strict=False)])
            }
        elif route == ("POST", "/tokens"):
            overrides = {"user": st.sampled_from([DROP, "alice", "bob", "boss"]), "expires_in": durations}
        if not overrides:
            return st.just(body)
        steered = st.fixed_dictionaries(overrides).map(
            lambda chosen: {k: v for k, v in {**body, **chosen}.items() if v is not DROP}
        )
        return st.one_of(st.just(body), steered)


def identity_headers(seeded: Seeded, who: str) -> dict[str, str]:
    """A fresh token for each operation's run, so that a generated DELETE /tokens/{id} that
    revokes one spoils only the cases after it of that operation."""
    if who == "nobody":
        return {}
    name = "boss" if who == "admin" else "alice"
    token, _info = seeded.service.create_token(ROOT, user=name, label="schemathesis")
    return {"Authorization": f"Bearer {token}"}


def weight(operation: schemathesis.APIOperation, mode: GenerationMode) -> int:
    """Requests with a body have more to explore: more of their positive cases."""
    return 3 if mode is GenerationMode.POSITIVE and operation.method.upper() in ("POST", "PATCH") else 1


def run_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    call: Callable[[schemathesis.Case], None],
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def test(case: schemathesis.Case) -> None:
        call(case)

    test()


def test_every_answer_is_a_documented_status_content_type_and_body(api_server: Running) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.url}/api/openapi.json")
    steer(schema, api_server)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Revoking tokens last: nothing after it loses its credentials.
    operations.sort(key=lambda op: (op.method.upper() == "DELETE" and "/tokens/" in op.path, op.path))
    assert len(operations) == 19
    ran: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for (who, mode), examples in BUDGET.items():
        for operation in operations:
            headers = identity_headers(api_server.seeded, who)
            kind = f"{who}/{mode.value}"

            def call(case: schemathesis.Case, headers: dict[str, str] = headers, kind: str = kind) -> None:
                response = case.call_and_validate(base_url=api_server.url, headers=headers, checks=CHECKS)
                ran[kind] += 1
                statuses[response.status_code] += 1

            run_operation(operation, mode, examples * weight(operation, mode), call)
    total = sum(ran.values())
    print(
        f"\nschemathesis: {total} cases over {len(operations)} operations in "
        f"{time.monotonic() - started:.1f} s; by identity and mode {dict(ran)}; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert total >= 1000
    assert statuses[200] + statuses[201] > 50  # not only refusals: real answers were checked
    assert statuses[401] > 0 and statuses[422] > 0
    assert not any(code >= 500 for code in statuses)
