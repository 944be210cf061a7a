"""Runs the API and web page on uvicorn in a thread of `pcc serve`, beside the loop."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from pcc.common.errors import ConfigError
from pcc.controller.settings import Settings

log = logging.getLogger(__name__)


class ApiServer:
    """uvicorn serving :func:`pcc.api.app.create_app` on ``settings.api``'s address."""

    def __init__(self, settings: Settings) -> None:
        from pcc.api.app import create_app

        self.settings = settings
        config = uvicorn.Config(
            create_app(settings),
            host=settings.api.host,
            port=settings.api.port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="on",  # the app's lifespan sizes the routes' thread pool
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; returns the URL (with the port the system picked for port 0)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                api = self.settings.api
                raise ConfigError(
                    f"[api] listen: cannot serve on {api.host}:{api.port} (in use, or not an address "
                    "of this machine); pick another with [api] listen in pcc.toml or $PCC_API_LISTEN"
                )
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
