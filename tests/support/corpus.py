"""gunicorn's request corpus, kept in tests/data/http-corpus: decode its .http files, read its manifests.

A .http file is a readable rendering of wire bytes; its README gives the decoding, done here in
one regex pass so that an escape never re-reads the output of another (`\\r\\n` then `\\n`).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from servers.http import Limits

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


# -- what these servers do with each case, where it is not what gunicorn does, and why -------------
# (the parser tests, the conformance test over sockets and the reliability table all read these)

# Valid for gunicorn (several only with a non-default option), refused here by a stated policy.
VALID_REFUSED = {
    "009": (400, "Transfer-Encoding (identity) with Content-Length: CL and TE together are a 400"),
    "025": (501, "Transfer-Encoding gzip then chunked: a coding we do not implement is a 501"),
    "025_line": (501, "Transfer-Encoding: gzip,chunked: a coding we do not implement is a 501"),
    "rfc9112_smuggle_gzip_chunked_01": (501, "Transfer-Encoding: gzip, chunked: not implemented, so 501"),
    # identity is no longer a registered coding; a front end that reads its body another way would
    # disagree with us about where the request ends (029 and 030 also lack a Host: 501 comes first)
    "rfc9112_smuggle_te_identity_chunked_01": (501, "Transfer-Encoding: identity, chunked: identity is a 501"),
    "029": (501, "Transfer-Encoding identity then chunked, in two fields: identity is a 501"),
    "030": (501, "Transfer-Encoding identity then chunked, in two fields: identity is a 501"),
    "027": (400, "raw non-ASCII bytes in the request-target: a target is visible ASCII"),
    "028": (400, "space before the colon; gunicorn accepts it only with strip_header_spaces"),
    "031compat": (400, "lower-case method; gunicorn accepts it only with permit_unconventional_http_method"),
    "031compat2": (400, "lower-case method; gunicorn accepts it only with permit_unconventional_http_method"),
    "compat_obs_fold": (400, "obsolete line folding; gunicorn accepts it only with permit_obsolete_folding"),
    "compat_obs_fold_huge": (400, "obsolete line folding; gunicorn accepts it only with permit_obsolete_folding"),
    "pp_01": (400, "PROXY protocol v1 line; gunicorn reads it only with proxy_protocol"),
    "pp_02": (400, "PROXY protocol v1 line; gunicorn reads it only with proxy_protocol"),
    "pp_04": (400, "PROXY protocol v2 header (starts with CRLFCRLF NUL); gunicorn only with proxy_protocol"),
    "pp_05": (400, "PROXY protocol v2 header (starts with CRLFCRLF NUL); gunicorn only with proxy_protocol"),
    "rfc9112_target_authority_connect_01": (501, "CONNECT: these servers tunnel nothing, and a 2xx would say they do"),
    "rfc9112_target_authority_ipv6_01": (501, "CONNECT: these servers tunnel nothing, and a 2xx would say they do"),
}


# HTTP/1.1 requests without a Host field: gunicorn serves them, RFC 9112 section 3.2 makes them a 400.
# test_corpus_valid also parses each with a Host added, so what they test of framing is still tested.
# In 022 the request before it (HTTP/1.0, kept alive) is served first.
NO_HOST = {
    *("004", "005", "006", "007", "010", "011", "012", "013", "014", "018", "021", "022", "023"),
    *("031", "100"),
}


VALID_REFUSED.update({name: (400, "HTTP/1.1 without Host (RFC 9112 section 3.2)") for name in NO_HOST})
# pp_03 (no PROXY line at all) and 040_compat (header_map only changes what a WSGI app sees of
# underscore names; the framing is the same as 040's) are plain valid requests here.


# Valid with the limits gunicorn's fixture raises (the manifest's config_overrides): the request
# line is 8191 bytes and a header line 8206, CRLF included, just over our 8190 defaults.
VALID_LIMITS = {
    "024": Limits(max_request_line=8200, max_header_line=8210),
    "026": Limits(max_request_line=8200, max_header_line=8210),
}


# Content-Length: 17914 but only 8599 body bytes in the file: gunicorn reads the body to EOF and
# accepts it; a truncated body is never a complete request here (RELIABILITY.md).
VALID_TRUNCATED = {"099"}


# gunicorn-only features (the corpus README): nothing in them is invalid HTTP/1.1 framing.
GUNICORN_ONLY = {
    "pp_01": "PROXY protocol (proxy_protocol=True)",
    "pp_02": "PROXY protocol (proxy_protocol=True)",
    "pp_03": "PROXY protocol (proxy_protocol=True)",
    "019": "X-Forwarded-* trust (forwarded_allow_ips)",
    "040": "refusing underscores in header names (header_map=refuse)",
    "chunked_07": "refusing underscores in header names (header_map=refuse)",
}


# Cases that fail in gunicorn only under a limit: replayed with the same limit. gunicorn's
# limit_request_field_size counts the CRLF, as our max_header_line does, so the number maps
# unchanged; that is the mapping under which 012 (a 99-byte line, CRLF included, against 98) is
# over its limit at all. gunicorn's limit_request_line leaves the CRLF out, so its default 4094,
# which 006 exceeds, is our 4096.
INVALID_LIMITS = {
    "006": Limits(max_request_line=4094 + 2),
    "010": Limits(max_header_line=10),
    "011": Limits(max_header_count=2),
    "012": Limits(max_header_line=98),
    "013": Limits(max_header_line=14),
}
