"""PCC's exception tree. Library code raises these and never prints or exits; each program
(`pcc`, `pragma`, `pcc-job`) maps them to its own exit statuses once, at its entry point,
and the API maps them to HTTP statuses."""

from __future__ import annotations


class PccError(Exception):
    """Root of every error PCC reports to a user."""


class ConfigError(PccError):
    """Invalid or missing configuration; the message names the file and the key."""


class UserInputError(PccError):
    """A request a user made that cannot be accepted as given (bad value, bad name)."""


class NotFound(UserInputError):
    """What was asked for does not exist, or is not the asker's to see (the same answer
    for both, so that nobody learns of others' reservations by guessing ids)."""


class Forbidden(UserInputError):
    """The asker may see this but not do that (e.g. a user acting as another, or an
    admin-only command)."""


class Unauthenticated(UserInputError):
    """No credentials, or credentials that are wrong, expired or revoked (HTTP 401). The
    message never says which, so that it tells a guesser nothing."""


class Conflict(PccError):
    """The request is valid but collides with the state of things: a reservation that does
    not fit the calendar, an extension into someone else's booking, a cancel of something
    already ended. ``reason`` is what collides; ``details`` what an interface may show."""

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class CapacityError(Conflict):
    """Not enough capacity (at a site, or in the calendar); the message says what is short."""


class UnsupportedError(UserInputError):
    """The site or its back-end does not support what was asked (e.g. ENT)."""


class PoolError(PccError):
    """The embedded HTCondor pool is not installed, not running, or failed to start."""


class CondorError(PccError):
    """HTCondor refused or failed an operation; the message carries the schedd's words."""


class TemporaryError(PccError):
    """A failure worth retrying later (a site or daemon briefly unreachable)."""


class PermanentError(PccError):
    """A failure that retrying will not fix."""


class DriverError(PccError):
    """The VM provisioner (libvirt, EC2, ...) failed; the message carries its words."""
