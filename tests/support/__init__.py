"""What the tests share and are not tests: the checkout's root, composing a config as the runner does,
the optional programs (programs), a raw HTTP client (rawhttp), the HTTP corpus (corpus), and the
reliability table the server tests fill (reliability_table). tests/ is on sys.path (pytest puts the
directory of tests/conftest.py there), so a test imports `from support import ...`."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
