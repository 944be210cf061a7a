"""Notices over a real SMTP server (aiosmtpd) and a real HTTP receiver, both on loopback:
sent once per notice and channel, even across restarts; a failing channel blocks nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller as SmtpController
from aiosmtpd.handlers import Message

from pcc.controller.model import Allocation, Reservation, State, User
from pcc.controller.notify import Notifier
from pcc.controller.settings import NotifyConfig, Settings
from pcc.controller.store import Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def handle_message(self, message: Any) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    server = SmtpController(inbox, hostname="127.0.0.1", port=port)
    server.start()
    yield port, inbox
    server.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def running_reservation(store: Store) -> str:
    store.add_user(User("alice", "alice@lab.example", ""))
    now = int(time.time())
    res = store.add_reservation(
        Reservation(
            "", "alice", "t", "tiny", now - 60, now + 300, now, allocations=(Allocation("", "a", 2, 1.0),)
        )
    )
    alloc = res.allocations[0]
    assert alloc.id is not None
    for state in (State.SCHEDULED, State.BOOTING, State.RUNNING):
        store.transition(alloc.id, state, "test")
    store.update_allocation(
        alloc.id, public_ip="127.0.0.2:22000", frontend=f"{res.id}-frontend", nodes_up=2, nodes_total=2
    )
    return res.id


def test_notices_go_by_email_and_webhook_once_even_after_a_restart(
    tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    port, inbox = smtp
    url, received = webhook
    settings = Settings(
        state_dir=tmp_path,
        notify=NotifyConfig(smtp_host="127.0.0.1", smtp_port=port, webhook=url, ending_minutes=10),
    )
    store = Store(tmp_path / "pcc.db")
    rid = running_reservation(store)
    sent = Notifier(settings, store).send_due()
    kinds = sorted({(n.kind, channel) for n, channel in sent})
    assert kinds == [(k, c) for k in ("admitted", "ending", "running") for c in ("email", "webhook")]
    running = next(m for m in inbox.messages if "cluster running" in m["Subject"])
    assert running["To"] == "alice@lab.example"
    assert "ssh -p 22000 root@127.0.0.2" in running.get_payload(decode=True).decode()
    assert {r["kind"] for r in received} == {"admitted", "ending", "running"}
    assert all(r["reservation"] == rid for r in received)

    # A restarted controller (a new notifier on the same store) repeats nothing.
    assert Notifier(settings, Store(tmp_path / "pcc.db")).send_due() == []
    assert len(inbox.messages) == 3 and len(received) == 3


def test_a_failing_channel_neither_raises_nor_stops_the_other(
    tmp_path: Path, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    settings = Settings(
        state_dir=tmp_path,
        notify=NotifyConfig(smtp_host="127.0.0.1", smtp_port=port, webhook=dead, timeout_s=2),
    )
    store = Store(tmp_path / "pcc.db")
    running_reservation(store)
    sent = Notifier(settings, store).send_due()
    assert {channel for _, channel in sent} == {"email"}
    assert len(inbox.messages) == 3  # admitted, running, ending; the webhook is retried later
    assert not store.notice_sent(sent[0][0].reservation, "", "admitted", "webhook")
