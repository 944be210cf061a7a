"""The monitors' kept SSH login (OpenSSH's connection sharing): the options it always
passes, and a control socket whose path fits a Unix socket wherever $TMPDIR points."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcc.controller.openssh import SharedConnection, ssh_options
from pcc.controller.settings import SiteEntry

SITE = SiteEntry("a", "127.0.0.9", 2222, "pcc-a", Path("/k/id"), Path("/k/known_hosts"), 4, 2.0)


def test_logins_are_by_key_only_with_the_sites_host_key_checked() -> None:
    opts = ssh_options(SITE, 5)
    pairs = {opts[i + 1] for i in range(len(opts) - 1) if opts[i] == "-o"}
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", "IdentitiesOnly=yes"} <= pairs
    assert "UserKnownHostsFile=/k/known_hosts" in pairs and "GlobalKnownHostsFile=/dev/null" in pairs
    assert opts[opts.index("-i") + 1] == "/k/id" and opts[opts.index("-p") + 1] == "2222"
    assert opts[opts.index("-F") + 1] == "/dev/null"  # no user configuration applies


def test_the_control_socket_is_short_even_when_tmpdir_is_a_deep_scratch_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path / ("scratch-" * 12)
    deep.mkdir()
    monkeypatch.setenv("TMPDIR", str(deep))
    conn = SharedConnection(SITE, 5)
    try:
        assert str(conn.socket).startswith("/tmp/pcc-ssh-") and len(str(conn.socket)) < 60
    finally:
        conn.close()


def test_no_login_is_tried_again_sooner_than_reconnect_s_after_a_failure() -> None:
    from pcc.common.errors import TemporaryError

    conn = SharedConnection(SITE, 1, 30)  # nothing listens at 127.0.0.9:2222
    try:
        with pytest.raises(TemporaryError) as first:
            conn.run("true", 5)
        with pytest.raises(TemporaryError) as second:
            conn.run("true", 5)
        assert conn.logins == 1 and str(second.value) == str(first.value)  # same words, no new login
    finally:
        conn.close()


def test_a_refused_connection_says_the_site_cannot_be_reached() -> None:
    from pcc.common.errors import TemporaryError

    # nothing listens at 127.0.0.9:2222
    with SharedConnection(SITE, 1, 0) as conn, pytest.raises(TemporaryError) as refused:
        conn.run("true", 5)
    assert str(refused.value) == "site a: cannot reach 127.0.0.9:2222: Connection refused"
    assert not conn.socket.parent.exists()  # `with` removes the socket's directory
