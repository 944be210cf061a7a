"""The REST API's documents as pydantic models: what OpenAPI publishes and what requests are
validated against. A reservation is one shape in and out: POST takes the document GET
returns, and ignores the fields the server owns. The documents themselves are built by
:mod:`pcc.controller.views`; these models describe and check them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from pcc.controller.model import State

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Cpus = Annotated[int, Field(ge=1, le=100_000)]
MemoryGb = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
# A duration: whole seconds, or text like 90m, 2h, 1d12h.
Duration = Annotated[
    int | Annotated[str, StringConstraints(max_length=32)],
    Field(description="seconds, or text like 90m, 2h, 1d12h", examples=[7200, "2h"]),
]
Text = Annotated[str, StringConstraints(max_length=200)]
LATEST = datetime(3000, 1, 1, tzinfo=UTC).timestamp()


def _representable(when: datetime) -> datetime:
    if not 0 <= when.timestamp() < LATEST:
        raise ValueError("a time between 1970 and 3000 is expected")
    return when


# A time given with its zone (ISO 8601: 2026-12-01T09:00:00Z), between 1970 and 3000.
When = Annotated[AwareDatetime, AfterValidator(_representable)]
Key = Annotated[str, StringConstraints(max_length=16_384)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- errors -------------------------------------------------------------------------------------
class Window(BaseModel):
    begin: datetime
    end: datetime


class ErrorBody(BaseModel):
    type: str = Field(description="the error's kind, e.g. NotFound, Conflict, CapacityError")
    message: str
    reason: str | None = Field(None, description="409: what collides")
    next_window: Window | None = Field(None, description="409 on a reservation: the next window that fits")
    details: list[dict[str, object]] | None = Field(None, description="422: what is wrong where")


class ErrorDoc(BaseModel):
    error: ErrorBody


# -- reservations -------------------------------------------------------------------------------
class AllocationDoc(BaseModel):
    site: str
    cpus: int
    memory_gb: float
    ent: bool
    state: State
    reason: str
    frontend: str
    public_address: str
    nodes_up: int
    nodes_total: int
    login_command: str = Field(description="how to log in to the frontend once running (else empty)")


class ReservationDoc(BaseModel):
    id: str
    owner: str
    title: str
    image: str
    begin: datetime
    end: datetime
    state: State
    cancelled: bool
    allocations: list[AllocationDoc]


class EventDoc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    time: datetime
    site: str
    from_: str = Field(alias="from")
    to: str
    why: str


class AllocationIn(Strict):
    """One site's part of a reservation; what the server owns (state, addresses) is ignored."""

    site: Name
    cpus: Cpus
    memory_gb: MemoryGb = 1.0


class ReservationIn(Strict):
    """The reservation document as GET returns it (``id``, ``state``, ``cancelled`` and the
    allocations' live fields are ignored; ``owner`` is yours, or anyone's for an admin: 403
    otherwise), plus ``ssh_key``. Give ``end`` or ``duration``."""

    image: Name
    begin: When | Literal["now"]
    end: When | None = None
    duration: Duration | None = None
    title: Text = ""
    owner: Name | None = None
    ssh_key: Key | None = Field(None, description="an OpenSSH public key (default: the owner's)")
    allocations: Annotated[list[AllocationIn], Field(min_length=1, max_length=32)]


class ReservationPatch(Strict):
    """Moves the end (extend or shorten; the calendar is checked again). The rest of the
    document may be sent back as it was; it is ignored."""

    end: When


# -- slots ---------------------------------------------------------------------------------------
class SlotDemand(Strict):
    site: Name
    cpus: Cpus
    memory_gb: MemoryGb = 1.0


class SlotSearch(Strict):
    sites: Annotated[list[SlotDemand], Field(min_length=1, max_length=32)]
    duration: Duration
    not_before: When | None = None
    not_after: When | None = None
    count: Annotated[int, Field(ge=1, le=20)] = 3


class SlotsDoc(BaseModel):
    windows: list[Window]


# -- sites and images ----------------------------------------------------------------------------
class CapacityDoc(BaseModel):
    cpus: int
    memory_gb: float
    reserved_cpus: int = Field(description="CPUs held by reservations now")
    reserved_memory_gb: float


class SiteDoc(BaseModel):
    name: str
    host: str
    health: Literal["up", "degraded", "down", "unknown"]
    reason: str
    last_probe: datetime | None
    capacity: CapacityDoc
    deployment_type: str
    ent: bool
    pragma_version: str
    images: list[str] | None = Field(description="null: the site has not reported its images yet")


class StepDoc(BaseModel):
    begin: datetime
    end: datetime
    free_cpus: int
    free_memory_gb: float


class AvailabilityDoc(BaseModel):
    site: str
    cpus: int
    memory_gb: float
    steps: list[StepDoc]


class ImageDoc(BaseModel):
    site: str
    name: str | None = None
    updated: datetime | None = None
    error: str | None = None


# -- users and tokens ----------------------------------------------------------------------------
Role = Literal["user", "admin"]


class UserDoc(BaseModel):
    name: str
    email: str
    ssh_key: str
    role: Role


class UserIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    email: Annotated[str, StringConstraints(max_length=320)] = ""
    ssh_key: Key = ""
    role: Role = "user"
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None


class UserPatch(Strict):
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    ssh_key: Key | None = None
    role: Role | None = None
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None


class TokenDoc(BaseModel):
    id: int
    user: str
    label: str
    created: datetime
    expires: datetime | None
    last_used: datetime | None
    revoked: datetime | None
    valid: bool


class NewTokenDoc(TokenDoc):
    token: str = Field(description="the token itself: shown this once, stored only as a hash")


class TokenIn(Strict):
    user: Name | None = None
    expires_in: Duration | None = None
    label: Text = ""
