"""A real ``moto_server`` (moto's stand-alone HTTP server) on 127.0.0.1 for the EC2 driver's
tests and demos: boto3 talks HTTP to it exactly as to an EC2 endpoint, so the driver's real
requests are exercised (never moto's in-process mocks).

The server runs as a child process in its own process group, on a free loopback port, with
a clean environment (no AWS credentials or config of this machine) and moto's validation of
AMIs, key pairs and instance types switched on, so it refuses what EC2 would refuse::

    with MotoServer.start() as moto:
        client = moto.client("ec2")
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = "us-east-1"
# Anything is accepted by moto; these are never real credentials.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
VALIDATION = {
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def isolated_aws_env(directory: Path) -> dict[str, str]:
    """Environment variables that keep boto3 away from this machine's AWS config, the
    instance-metadata service and any credentials but moto's fake ones."""
    config = directory / "aws-config"
    config.touch()
    return {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(config),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


@dataclass
class MotoServer:
    """A running ``moto_server``; :meth:`stop` ends it and its process group."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, log_dir: Path | None = None, timeout: float = 30.0, attempts: int = 3) -> Self:
        """Start the server on a free loopback port and wait until it answers HTTP."""
        tmp = None
        if log_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="pcc-moto-")
            log_dir = Path(tmp.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(log_dir),
            "LANG": "C.UTF-8",
            **isolated_aws_env(log_dir),
            **VALIDATION,
        }
        last = ""
        for _ in range(attempts):
            port = free_port()
            log_path = log_dir / f"moto-{port}.log"
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=log_dir,
                    start_new_session=True,
                )
            server = cls(port, proc, log_path, tmp)
            if server._wait_ready(timeout):
                log.info("moto_server pid %d on %s", proc.pid, server.url)
                return server
            last = log_path.read_text(errors="replace")[-2000:]
            server._terminate()
        if tmp is not None:
            tmp.cleanup()
        raise RuntimeError(f"moto_server did not start on {HOST}: {last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers HTTP: it is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        return False

    def reset(self) -> None:
        """Forget every resource in every region (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, service: str = "ec2", region: str = REGION) -> Any:
        """A boto3 client of this server that reads no file and asks no metadata service."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region
        )
        return session.client(
            service,
            endpoint_url=self.url,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def _terminate(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - a manual helper: python -m pcc.dev.moto_server
    logging.basicConfig(level=logging.INFO)
    with MotoServer.start() as server:
        print(f"moto_server on {server.url} (Ctrl-C ends it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":  # pragma: no cover
    main()
