"""Allow-lists for every name that reaches a shell, a file path or a VM definition."""

from __future__ import annotations

import re

from pcc.common.errors import UserInputError

# A cluster name becomes a hostname prefix, a libvirt domain name and a directory name:
# a lower-case DNS label of at most 40 characters.
CLUSTER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
NETWORK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,30}\Z")


def cluster_name(value: str) -> str:
    if not CLUSTER_NAME.match(value):
        raise UserInputError(
            f"invalid cluster name {value!r}: use 1-40 lower-case letters, digits and '-' "
            "(starting and ending with a letter or digit)"
        )
    return value


def image_name(value: str) -> str:
    if not IMAGE_NAME.match(value):
        raise UserInputError(f"invalid image name {value!r}: use letters, digits, '_', '.', '-' (max 63)")
    return value


def network_name(value: str) -> str:
    if not NETWORK_NAME.match(value):
        raise UserInputError(f"invalid network name {value!r}")
    return value
