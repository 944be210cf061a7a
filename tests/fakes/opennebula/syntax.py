"""OpenNebula's template syntax as oned reads it, for the fake: a re-implementation (not a
copy) of the rules of ``src/parsers/template_parser.l`` and ``template_syntax.y``.

Lexer: in the initial state comments (``# ...``), blanks, ``NAME`` (``[[:alnum:]_]+``),
``=``, ``,`` and ``]``; after ``=`` one value: ``[`` (a vector follows), a line holding
``]]>`` (refused), a double-quoted string of characters other than ``"`` in which ``\\"``
stands for a quote, or a bare word without ``=#,[]`` and blanks. As flex does, the longest
match wins and ties go to the earlier rule. Grammar: ``NAME = value``, ``NAME = [ K = v, ...
]``, ``NAME = [ ]`` and ``NAME =`` at the end of a line (empty). Names are upper-cased, a
vector keeps the first of repeated keys, and every value has each ``\\"`` replaced by ``"``
(nothing else is an escape).

Not modelled: flex's default rule (an unmatched character is echoed and skipped by oned;
here it is a syntax error) and the XML form of templates (``parse_str_or_xml``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

Value = str | dict[str, str]


class TemplateSyntaxError(ValueError):
    pass


_INITIAL_RULES = [
    ("COMMENT", re.compile(r"[ \t]*#[^\n]*\n")),
    ("SPACE", re.compile(r"[ \t\n]+")),
    ("VARIABLE", re.compile(r"[A-Za-z0-9_]+")),
    ("EQUAL", re.compile(r"[ \t]*=[ \t]*")),
    ("EQUAL_EMPTY", re.compile(r"[ \t]*=[ \t]*\n")),
    ("COMMA", re.compile(r"[ \t\n]*,[ \t\n]*")),
    ("CBRACKET", re.compile(r"[ \t\n]*\][ \t\n]*")),
]
_OBRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_CCDATA = re.compile(r"[^\n]*\]\]>[^\n]*")
_WORD = re.compile(r"[^=# \t\n,\[\]]+")


def _quoted_end(text: str, pos: int) -> int | None:
    """The end of the longest ``"([^"]|\\")*"`` at ``pos``: inside, a quote either follows
    a backslash (and may be an escaped one) or closes the string."""
    if pos >= len(text) or text[pos] != '"':
        return None
    best = None
    i = pos + 1
    while i < len(text):
        if text[i] == '"':
            best = i + 1
            if text[i - 1] != "\\" or i - 1 <= pos:
                break  # a quote no backslash precedes can only close
        i += 1
    return best


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int


def tokens(text: str) -> Iterator[Token]:
    pos, value_state, line = 0, False, 1
    while pos < len(text):
        candidates: list[tuple[int, int, str]] = []  # (length, -rule order, kind)
        if value_state:
            # rule order as in template_parser.l: [ , CDATA, quoted string, bare word
            for order, (kind, rx) in (
                (0, ("OBRACKET", _OBRACKET)),
                (1, ("CCDATA", _CCDATA)),
                (3, ("STRING", _WORD)),
            ):
                m = rx.match(text, pos)
                if m and m.end() > pos:
                    candidates.append((m.end() - pos, -order, kind))
            end = _quoted_end(text, pos)
            if end is not None:
                candidates.append((end - pos, -2, "QSTRING"))
        else:
            for order, (kind, rx) in enumerate(_INITIAL_RULES):
                m = rx.match(text, pos)
                if m and m.end() > pos:
                    candidates.append((m.end() - pos, -order, kind))
        if not candidates:
            raise TemplateSyntaxError(f"syntax error at line {line}: unexpected {text[pos]!r}")
        length, _, kind = max(candidates)
        chunk = text[pos : pos + length]
        pos += length
        start_line, line = line, line + chunk.count("\n")
        if kind == "QSTRING":
            kind, chunk = "STRING", chunk[1:-1]
        if kind in ("STRING", "OBRACKET", "CCDATA"):
            value_state = False
        elif kind == "EQUAL":
            value_state = True
        if kind not in ("COMMENT", "SPACE"):
            yield Token(kind, chunk, start_line)


def unescape(value: str) -> str:
    """oned's ``unescape``: each ``\\"`` becomes ``"``, scanning on from the replacement."""
    pos = 0
    while (pos := value.find('\\"', pos)) != -1:
        value = value[:pos] + '"' + value[pos + 2 :]
    return value


@dataclass
class Template:
    """Attributes in the order given; a name may repeat (DISK, NIC, AR)."""

    items: list[tuple[str, Value]] = field(default_factory=list)

    def get(self, name: str) -> Value | None:
        return next((v for n, v in self.items if n == name), None)

    def text(self, name: str, default: str = "") -> str:
        value = self.get(name)
        return value if isinstance(value, str) else default

    def vectors(self, name: str) -> list[dict[str, str]]:
        return [v for n, v in self.items if n == name and isinstance(v, dict)]

    def erase(self, name: str) -> None:
        self.items = [(n, v) for n, v in self.items if n != name]

    def replace(self, name: str, value: Value) -> None:
        self.erase(name)
        self.items.append((name, value))

    def merge(self, other: Template) -> None:
        """oned's Template::merge: the other's names replace these, empty vectors dropped."""
        for name in {n for n, _ in other.items}:
            self.erase(name)
        self.items.extend((n, v) for n, v in other.items if not (isinstance(v, dict) and not v))

    def copy(self) -> Template:
        return Template([(n, dict(v) if isinstance(v, dict) else v) for n, v in self.items])


def parse(text: str) -> Template:
    toks = list(tokens(text))
    out = Template()
    i = 0

    def expect(kind: str) -> Token:
        nonlocal i
        if i >= len(toks) or toks[i].kind != kind:
            found = toks[i].kind if i < len(toks) else "end of template"
            line = toks[i].line if i < len(toks) else (toks[-1].line if toks else 1)
            raise TemplateSyntaxError(f"syntax error, unexpected {found}, expecting {kind} at line {line}")
        i += 1
        return toks[i - 1]

    while i < len(toks):
        name = expect("VARIABLE").text.upper()
        if i < len(toks) and toks[i].kind == "EQUAL_EMPTY":
            i += 1
            out.items.append((name, ""))
            continue
        expect("EQUAL")
        if i < len(toks) and toks[i].kind == "CCDATA":
            raise TemplateSyntaxError(f"syntax error at line {toks[i].line}: ']]>' in a value")
        if i < len(toks) and toks[i].kind == "OBRACKET":
            i += 1
            vector: dict[str, str] = {}
            if i < len(toks) and toks[i].kind == "CBRACKET":
                i += 1
                out.items.append((name, vector))
                continue
            while True:
                key = expect("VARIABLE").text.upper()
                expect("EQUAL")
                vector.setdefault(key, unescape(expect("STRING").text))
                if i < len(toks) and toks[i].kind == "COMMA":
                    i += 1
                    continue
                expect("CBRACKET")
                break
            out.items.append((name, vector))
            continue
        out.items.append((name, unescape(expect("STRING").text)))
    return out
