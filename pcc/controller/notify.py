"""Notices to users on the changes that matter to them: reservation admitted, cluster running
(with its login address), failed (with the reason), ending soon, stopped. Sent by email
(SMTP) and/or a webhook (JSON POST); each notice once, recorded in the store, so a restart
never repeats one. Each run follows the events table from a cursor (plus the live
reservations, for "ending soon"), so its cost follows what changed. Sending runs beside the
reconcile loop with timeouts: a failing channel is logged and retried later, and never
blocks or breaks the loop."""

from __future__ import annotations

import json
import logging
import smtplib
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage

from pcc.controller.model import TERMINAL, State
from pcc.controller.settings import Settings
from pcc.controller.store import Store

log = logging.getLogger(__name__)

CURSOR = "notify"  # the last event whose notices are all sent


@dataclass(frozen=True)
class Notice:
    reservation: str
    site: str  # "" for the reservation as a whole
    kind: str  # admitted | running | failed | ending | stopped
    owner: str
    subject: str
    body: str


def due_notices(
    store: Store, ending_minutes: float, now: float | None = None, after_event: int = 0
) -> list[Notice]:
    """The notices the store's state calls for (sent or not: the caller filters), for the
    reservations with an event after ``after_event`` and the live ones (for "ending soon"):
    the cost follows what changed, not the history."""
    now = time.time() if now is None else now
    out = []
    for res in store.live_reservations(store.reservations_with_events_after(after_event)):
        sites = ", ".join(a.site for a in res.allocations)
        out.append(
            Notice(
                res.id,
                "",
                "admitted",
                res.owner,
                f"PCC {res.id}: reservation admitted",
                f"Your reservation {res.id} of {res.image} at {sites} was admitted.",
            )
        )
        for a in res.allocations:
            if a.state is State.RUNNING:
                login = a.login_command or "see `pcc show`"
                out.append(
                    Notice(
                        res.id,
                        a.site,
                        "running",
                        res.owner,
                        f"PCC {res.id}: cluster running at {a.site}",
                        f"Your cluster {a.frontend} at {a.site} is running ({a.nodes_up}/{a.nodes_total} "
                        f"nodes up). Log in: {login}",
                    )
                )
            if a.state is State.FAILED:
                out.append(
                    Notice(
                        res.id,
                        a.site,
                        "failed",
                        res.owner,
                        f"PCC {res.id}: failed at {a.site}",
                        f"Your reservation {res.id} failed at {a.site}: {a.reason}",
                    )
                )
        states = [a.state for a in res.allocations]
        if State.RUNNING in states and 0 < res.end - now <= ending_minutes * 60:
            out.append(
                Notice(
                    res.id,
                    "",
                    "ending",
                    res.owner,
                    f"PCC {res.id}: ending soon",
                    f"Your reservation {res.id} ends in {int((res.end - now) // 60) + 1} minutes; "
                    f"extend it with `pcc extend {res.id} --by 1h`.",
                )
            )
        if states and all(s in TERMINAL for s in states) and State.STOPPED in states:
            out.append(
                Notice(
                    res.id,
                    "",
                    "stopped",
                    res.owner,
                    f"PCC {res.id}: stopped",
                    f"Your reservation {res.id} has ended and its clusters are torn down.",
                )
            )
    return out


class Notifier:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store

    def send_due(self, now: float | None = None) -> list[tuple[Notice, str]]:
        """Send what is due and not yet sent, per channel; returns (notice, channel) sent now."""
        cfg = self.settings.notify
        channels = [c for c, on in (("email", bool(cfg.smtp_host)), ("webhook", bool(cfg.webhook))) if on]
        sent: list[tuple[Notice, str]] = []
        if not channels:
            return sent
        cursor, newest = self.store.cursor(CURSOR), self.store.last_event_id()
        complete = True
        for notice in due_notices(self.store, cfg.ending_minutes, now, after_event=cursor):
            for channel in channels:
                if self.store.notice_sent(notice.reservation, notice.site, notice.kind, channel):
                    continue
                try:
                    done = self._email(notice) if channel == "email" else self._webhook(notice)
                except Exception as exc:  # one bad notice or channel must not stop the others
                    complete = False
                    log.warning(
                        "reservation %s: %s notice %r failed: %s; retried later",
                        notice.reservation,
                        channel,
                        notice.kind,
                        exc,
                    )
                    continue
                if done:
                    self.store.mark_notice(notice.reservation, notice.site, notice.kind, channel)
                    sent.append((notice, channel))
        if complete:  # events up to here need nothing more; a failure keeps them for a retry
            self.store.set_cursor(CURSOR, newest)
        return sent

    def _email(self, notice: Notice) -> bool:
        cfg = self.settings.notify
        user = self.store.user(notice.owner)
        if user is None or not user.email:
            return True  # nobody to write to: nothing left to do
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = cfg.sender, user.email, notice.subject
        msg.set_content(notice.body)
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            smtp.send_message(msg)
        return True

    def _webhook(self, notice: Notice) -> bool:
        cfg = self.settings.notify
        body = json.dumps(
            {
                "reservation": notice.reservation,
                "site": notice.site,
                "kind": notice.kind,
                "owner": notice.owner,
                "subject": notice.subject,
                "text": notice.body,
            }
        ).encode()
        request = urllib.request.Request(cfg.webhook, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=cfg.timeout_s) as reply:
            return 200 <= reply.status < 300
