"""PCC's exception tree: library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class PccError(Exception):
    """Root of every error PCC reports to a user. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(PccError):
    """Invalid or missing configuration; the message names the file and the key."""

    exit_code = 2


class UserInputError(PccError):
    """A request a user made that cannot be accepted as given."""

    exit_code = 2


class PoolError(PccError):
    """The embedded HTCondor pool is not installed, not running, or failed to start."""

    exit_code = 3


class CondorError(PccError):
    """HTCondor refused or failed an operation; the message carries the schedd's words."""

    exit_code = 4


class TemporaryError(PccError):
    """A failure worth retrying later (a site or daemon briefly unreachable)."""

    exit_code = 5


class PermanentError(PccError):
    """A failure that retrying will not fix."""

    exit_code = 6


class CapacityError(UserInputError):
    """A request that does not fit the free capacity; the message says what is short."""

    exit_code = 4


class DriverError(PccError):
    """The VM provisioner (libvirt, EC2, ...) failed; the message carries its words."""

    exit_code = 5
