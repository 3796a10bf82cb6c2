"""gunicorn's request corpus, kept in tests/data/http-corpus: decode its .http files, read its manifests.

A .http file is a readable rendering of wire bytes; its README gives the decoding, done here in
one regex pass so that an escape never re-reads the output of another (`\\r\\n` then `\\n`).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "data" / "http-corpus"

_ESCAPE = re.compile(rb"\\r\\n|\\0|\\n|\\t|\\x([0-9A-Fa-f]{2})")
_SIMPLE = {b"\\r\\n": b"\r\n", b"\\0": b"\0", b"\\n": b"\n", b"\\t": b"\t"}


def decode(text: bytes) -> bytes:
    """README steps 1-5: drop physical newlines, then expand \\r\\n, \\0, \\n, \\t and \\xHH."""
    text = text.replace(b"\r", b"").replace(b"\n", b"")
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] else _SIMPLE[m[0]], text)


def load(kind: str, name: str) -> bytes:
    """The wire bytes of case `name` in `kind` ("valid" or "invalid")."""
    return decode((CORPUS / kind / f"{name}.http").read_bytes())


def names(kind: str) -> list[str]:
    return sorted(path.stem for path in (CORPUS / kind).glob("*.http"))


def manifest(kind: str) -> dict[str, dict[str, str]]:
    """Rows of `<kind>-manifest.tsv`, keyed by case name."""
    with open(CORPUS / f"{kind}-manifest.tsv", newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
