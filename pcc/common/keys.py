"""SSH public keys as users give them: one OpenSSH line, checked and normalized, the same
at the controller (users, reservations) and at the site (`pragma boot key=`)."""

from __future__ import annotations

import re

from pcc.common.errors import UserInputError

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_KEY = re.compile(r"^(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,3})(?: (?P<comment>.*))?$")


def normalize_public_key(text: str, source: str = "key") -> str:
    """One OpenSSH public key line; the comment is kept only if it is plain (YAML-safe) text."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise UserInputError(f"{source}: expected exactly one OpenSSH public key line, found {len(lines)}")
    match = _KEY.match(lines[0])
    if not match or match["type"] not in KEY_TYPES:
        raise UserInputError(f"{source}: not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA...')")
    comment = match["comment"] or ""
    key = f"{match['type']} {match['blob']}"
    if re.fullmatch(r"[A-Za-z0-9@._+-]{1,64}", comment):
        key += f" {comment}"
    return key
