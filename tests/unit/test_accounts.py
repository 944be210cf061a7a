"""Accounts at the service: argon2 passwords, random API tokens and web sessions kept only
as digests, token expiry and revocation, and who may manage users and tokens."""

from __future__ import annotations

import base64
import sqlite3
import time
from pathlib import Path

import pytest

from pcc.common.errors import Forbidden, NotFound, Unauthenticated, UserInputError
from pcc.controller import accounts
from pcc.controller.service import Actor, Service
from pcc.controller.settings import Settings
from pcc.controller.store import Store

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
ROOT = Actor("root", admin=True)
ALICE = Actor("alice")
BOB = Actor("bob")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def service(tmp_path: Path) -> Service:
    svc = Service(Settings(state_dir=tmp_path), Store(tmp_path / "pcc.db"))
    svc.add_user(ROOT, "alice", "alice@example.org", KEY)
    svc.add_user(ROOT, "bob", "", KEY)
    svc.add_user(ROOT, "carol", "", KEY, admin=True)
    return svc


def dump(db: Path) -> str:
    """Everything in the store file, as SQL text (what a copied or leaked file reveals)."""
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def raw_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_a_password_is_kept_as_an_argon2id_hash_that_verifies_only_the_password() -> None:
    stored = accounts.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.verify_password(stored, PASSWORD)
    assert not accounts.verify_password(stored, PASSWORD + "!")
    assert not accounts.verify_password("", PASSWORD)  # no password set: nothing verifies
    assert not accounts.verify_password("not-a-hash", PASSWORD)
    assert accounts.hash_password(PASSWORD) != stored  # salted


@pytest.mark.parametrize("short", ["", "a", "1234567"])
def test_passwords_shorter_than_8_characters_are_refused(service: Service, short: str) -> None:
    with pytest.raises(UserInputError, match="at least 8 characters"):
        service.set_password(ALICE, "alice", short)
    with pytest.raises(Unauthenticated):
        service.login("alice", short)


def test_an_8_character_password_is_accepted_and_logs_in(service: Service) -> None:
    service.set_password(ALICE, "alice", "12345678")
    _secret, user = service.login("alice", "12345678")
    assert user.name == "alice"


def test_a_wrong_password_and_an_unknown_user_are_the_same_refusal(service: Service) -> None:
    service.set_password(ALICE, "alice", PASSWORD)
    with pytest.raises(Unauthenticated) as wrong:
        service.login("alice", "wrong password")
    with pytest.raises(Unauthenticated) as unknown:
        service.login("nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value)


def test_a_store_dump_holds_neither_tokens_nor_passwords_nor_session_ids_yet_they_work(
    service: Service, tmp_path: Path
) -> None:
    service.set_password(ALICE, "alice", PASSWORD)
    token, _info = service.create_token(ALICE, label="laptop")
    session, _user = service.login("alice", PASSWORD)

    text = dump(tmp_path / "pcc.db")
    assert "laptop" in text and "alice" in text  # the dump is the store's
    for secret in (token, token.removeprefix(accounts.TOKEN_PREFIX), PASSWORD, session):
        assert secret not in text
        assert secret.encode() not in raw_bytes(tmp_path / "pcc.db")  # the file and its WAL too
    assert accounts.digest(token) in text  # only what it hashes to

    assert service.authenticate(token) == ALICE
    assert service.session(session) == ALICE


def test_a_token_is_32_random_bytes_or_more_and_never_repeats() -> None:
    tokens = {accounts.new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith(accounts.TOKEN_PREFIX)
        body = token.removeprefix(accounts.TOKEN_PREFIX)
        assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) >= 32
    session = accounts.new_session_id()
    assert len(base64.urlsafe_b64decode(session + "=" * (-len(session) % 4))) >= 32


def test_a_token_stands_for_its_user_until_it_expires(service: Service) -> None:
    now = time.time()
    token, info = service.create_token(ALICE, expires_in=60, now=now)
    assert info.expires == pytest.approx(now + 60)
    assert service.authenticate(token, now=now + 59) == ALICE
    with pytest.raises(Unauthenticated):
        service.authenticate(token, now=now + 60)


def test_a_revoked_token_is_refused(service: Service) -> None:
    token, info = service.create_token(ALICE)
    assert service.revoke_token(ALICE, info.id).revoked is not None
    with pytest.raises(Unauthenticated):
        service.authenticate(token)


def test_an_unknown_or_empty_token_is_refused_with_the_same_words(service: Service) -> None:
    messages = set()
    for token in ("", "pcc_" + "A" * 43, "garbage"):
        with pytest.raises(Unauthenticated) as refused:
            service.authenticate(token)
        messages.add(str(refused.value))
    assert len(messages) == 1


def test_a_token_lifetime_must_be_positive(service: Service) -> None:
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(UserInputError):
            service.create_token(ALICE, expires_in=bad)


def test_a_user_cannot_list_users_nor_make_a_token_for_someone_else(service: Service) -> None:
    with pytest.raises(Forbidden):
        service.users(ALICE)
    with pytest.raises(Forbidden):
        service.create_token(ALICE, user="bob")
    with pytest.raises(Forbidden):
        service.tokens(ALICE, user="bob")


def test_an_admin_lists_users_and_makes_tokens_for_others(service: Service) -> None:
    carol = service.authenticate(service.create_token(ROOT, user="carol")[0])
    assert carol == Actor("carol", admin=True)
    assert [u.name for u in service.users(carol)] == ["alice", "bob", "carol"]
    token, info = service.create_token(carol, user="bob")
    assert info.user == "bob" and service.authenticate(token) == BOB


def test_a_user_sees_and_revokes_only_their_own_tokens(service: Service) -> None:
    _mine, mine = service.create_token(ALICE)
    bobs_token, bobs = service.create_token(BOB)
    assert [t.id for t in service.tokens(ALICE)] == [mine.id]
    with pytest.raises(NotFound):
        service.revoke_token(ALICE, bobs.id)
    assert service.authenticate(bobs_token) == BOB


def test_a_new_password_ends_the_users_web_sessions(service: Service) -> None:
    service.set_password(ALICE, "alice", PASSWORD)
    session, _user = service.login("alice", PASSWORD)
    service.set_password(ALICE, "alice", PASSWORD + " again")
    with pytest.raises(Unauthenticated):
        service.session(session)


def test_a_user_cannot_make_themselves_an_admin(service: Service) -> None:
    with pytest.raises(Forbidden):
        service.update_user(ALICE, "alice", admin=True)
    assert service.user(ROOT, "alice").admin is False


def test_noting_a_tokens_use_never_waits_for_another_writer(service: Service, tmp_path: Path) -> None:
    token, info = service.create_token(ALICE)
    other = sqlite3.connect(tmp_path / "pcc.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    try:
        started = time.monotonic()
        assert service.authenticate(token) == ALICE
        assert time.monotonic() - started < 1  # not the store's 30 s busy timeout
        assert service.store.token(info.id).last_used is None  # skipped: it is only a hint
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert service.authenticate(token) == ALICE
    assert service.store.token(info.id).last_used is not None
