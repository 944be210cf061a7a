"""Plain-text templates shipped in the package (submit files, DAGs, pool configuration):
``@{name}`` placeholders, since ``$`` is HTCondor's own macro syntax."""

from __future__ import annotations

import string
from importlib import resources
from typing import Any


class AtTemplate(string.Template):
    delimiter = "@"


def render(package: str, name: str, **values: Any) -> str:
    """Fill a template from ``package`` (e.g. ``pcc.submit_templates``); a missing value raises."""
    text = resources.files(package).joinpath(name).read_text()
    return AtTemplate(text).substitute({k: str(v) for k, v in values.items()})
