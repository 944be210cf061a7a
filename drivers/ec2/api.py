"""How the EC2 driver speaks to EC2: one boto3 client per driver, signed with the site's
credentials and aimed at its endpoint, and calls whose failures become
:class:`Ec2ApiError` (a :class:`~pcc.common.errors.DriverError` carrying EC2's error code)."""

from __future__ import annotations

import os
import time
from typing import Any

from pcc.common.errors import DriverError
from pcc.drivers.ec2.settings import Ec2Settings

try:  # optional dependency: only sites using this driver need boto3
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - reported by the first call and by check()
    boto3 = None

    class BotoCoreError(Exception):  # type: ignore[no-redef]
        pass

    class ClientError(Exception):  # type: ignore[no-redef]
        pass


class Ec2ApiError(DriverError):
    """EC2 refused a request; ``code`` is its error code (e.g. ``DependencyViolation``)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


# EC2 says a dependency is still going away (worth waiting for while cleaning) ...
BUSY = frozenset({"DependencyViolation", "InvalidIPAddress.InUse", "IncorrectState"})
# ... or that what was to be removed is not there (nothing to do).
GONE_CODES = frozenset(
    {
        "InvalidKeyPair.NotFound",
        "InvalidGroup.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidAllocationID.NotFound",
        "InvalidAssociationID.NotFound",
        "InvalidVolume.NotFound",
        "InvalidNetworkInterfaceID.NotFound",
        "InvalidInstanceID.NotFound",
    }
)


def _refused(what: str, exc: ClientError) -> Ec2ApiError:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    return Ec2ApiError(f"EC2: {what}: {code}: {err.get('Message', '')}".rstrip(": "), code)


class Ec2Api:
    """The driver's calls to EC2."""

    def __init__(self, settings: Ec2Settings) -> None:
        self.settings = settings
        self._client: Any = None

    def client(self) -> Any:
        """The boto3 EC2 client, made on first use. With ``access_key_id`` set, no AWS config
        or credentials file of this machine is read; with ``endpoint_url`` set, no request
        goes anywhere else."""
        if self._client is not None:
            return self._client
        if boto3 is None:
            raise DriverError("boto3 is not installed (pip install 'pcc[ec2]')")
        s = self.settings
        try:
            if s.access_key_id is not None:
                core = botocore.session.Session()
                core.set_config_variable("config_file", os.devnull)
                core.set_config_variable("credentials_file", os.devnull)
                session = boto3.session.Session(
                    aws_access_key_id=s.access_key_id,
                    aws_secret_access_key=s.secret_access_key(),
                    region_name=s.region,
                    botocore_session=core,
                )
            else:
                session = boto3.session.Session(profile_name=s.profile, region_name=s.region)
            self._client = session.client(
                "ec2",
                endpoint_url=s.endpoint_url,
                config=Config(
                    retries={"max_attempts": 4, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    user_agent_extra="pcc-pragma",
                ),
            )
        except BotoCoreError as exc:
            raise DriverError(f"EC2: cannot set up a client for region {s.region}: {exc}") from None
        return self._client

    def call(self, what: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """One request; ``what`` says what it was for in the error."""
        client = self.client()
        try:
            return dict(getattr(client, method)(**kwargs))
        except ClientError as exc:
            raise _refused(what, exc) from None
        except BotoCoreError as exc:
            raise DriverError(f"EC2: {what}: {exc}") from None

    def all(self, what: str, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a Describe call, over all its pages."""
        client = self.client()
        if not client.can_paginate(method):
            return list(self.call(what, method, **kwargs).get(key, []))
        out: list[dict[str, Any]] = []
        try:
            for page in client.get_paginator(method).paginate(**kwargs):
                out.extend(page.get(key, []))
        except ClientError as exc:
            raise _refused(what, exc) from None
        except BotoCoreError as exc:
            raise DriverError(f"EC2: {what}: {exc}") from None
        return out

    def gone_ok(self, what: str, method: str, **kwargs: Any) -> bool:
        """A removal, treating "no such resource" as done; True if it removed something."""
        try:
            self.call(what, method, **kwargs)
        except Ec2ApiError as exc:
            if exc.code in GONE_CODES:
                return False
            raise
        return True

    def patiently(self, what: str, method: str, deadline: float, **kwargs: Any) -> bool:
        """Like :meth:`gone_ok`, retrying until ``deadline`` while EC2 says a dependency is
        still going away (an interface of a terminated instance, say)."""
        delay = min(0.5, self.settings.poll_interval_s)
        while True:
            try:
                return self.gone_ok(what, method, **kwargs)
            except Ec2ApiError as exc:
                if exc.code not in BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval_s * 4)
