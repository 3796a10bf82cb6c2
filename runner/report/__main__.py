"""`python -m runner.report DIR [--baseline OLD]` (runner/report/document.py)."""

import sys

from runner.report.document import main

if __name__ == "__main__":
    sys.exit(main())
