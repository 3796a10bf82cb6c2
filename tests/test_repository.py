"""The repository stands alone: no tracked file refers to a path outside its own tree.

A fresh clone has nothing beside it, so a test, config or document that reaches out of the tree
(the HTTP corpus once lived in ../shared, beside the checkout) works on one team's machines and
fails everywhere else. The files are the ones git tracks (`git ls-files`: what a clone gets; an
untracked scratch file is no one else's problem), each read as text; binary files are skipped.

What counts as leaving the tree, each a rule below with the reason it is drawn there:
- `../shared`, anywhere: the folder this project once read its test data and design from.
- a relative path of `../` steps that climbs above the repository root: read from a Markdown file's
  own folder (a link: docs/x.md -> ../README.md stays inside), and from the root for every other
  file (code, configs and scripts run from the root, as the README's commands do).
- `Path(__file__)` climbed above the root (`.parents[N]`, `.parent.parent...`): how Python code
  reaches beside its checkout.
- an absolute path into a home or workspace directory (/work/, /home/, /root/, /Users/), or into this
  checkout itself: they exist on one machine only. System paths (/proc, /tmp, /usr/bin/env) and URL
  paths are everywhere and are not flagged.
Only this file may spell the patterns out; it is the one allow-listed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from support import REPO

ALLOWED = {"tests/test_repository.py"}  # the rules themselves

SHARED = re.compile(r"\.\./shared\b")
UP_PATH = re.compile(r"(?<![\w./])((?:\.\./)+)[\w.{}*-]*")  # ../../x; not a/../x (that one stays where it began)
FILE_PARENTS = re.compile(r"__file__\)(?:\.resolve\(\)|\.absolute\(\))?(?:\.parents\[(\d+)\]|((?:\.parent\b)+))")
WORKSPACE = re.compile(r"(?<![\w./~-])/(?:work|home|root|Users)/[\w.-]")


def tracked_files() -> list[str]:
    """Paths git tracks in this checkout, relative to its root; skips the test when git cannot say."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot tell which files are tracked")
    git = ["git", "-C", str(REPO)]
    top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != REPO:
        why = top.stderr.strip() or f"its root is {top.stdout.strip()}"
        pytest.skip(f"{REPO} is not the root of a git checkout (an export?): {why}")
    listing = subprocess.run([*git, "ls-files", "-z"], capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split("\0") if name]


def escapes(relative: str, ups: str) -> bool:
    """Does `ups` (a run of `../`) in the file at `relative` climb above the root?"""
    below_root = len(PurePosixPath(relative).parts) - 1 if relative.endswith(".md") else 0
    return ups.count("../") > below_root


def violations(relative: str, text: str, checkout: str) -> list[str]:
    """Every reference in `text` (the file at `relative`) to a path outside the tree, as `line N: ...`."""
    found = []
    depth = len(PurePosixPath(relative).parts)  # a file at the root has depth 1
    for number, line in enumerate(text.splitlines(), 1):
        hits = [m[0] for m in SHARED.finditer(line)]
        hits += [m[0] for m in UP_PATH.finditer(line) if escapes(relative, m[1])]
        for m in FILE_PARENTS.finditer(line):  # parents[N] is N + 1 steps up from the file; the root is depth
            if (int(m[1]) + 1 if m[1] is not None else m[2].count(".parent")) > depth:
                hits.append(m[0])
        hits += [m[0] for m in WORKSPACE.finditer(line)]
        if checkout in line:
            hits.append(checkout)
        found += [f"line {number}: {hit!r}" for hit in dict.fromkeys(hits)]
    return found


def read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (figures)
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_refers_outside_the_repository() -> None:
    checkout = str(REPO) + "/"
    problems = {}
    for relative in tracked_files():
        path = REPO / relative
        if relative in ALLOWED or not path.is_file():  # deleted in the work tree but still tracked
            continue
        text = read_text(path)
        if text is not None and (found := violations(relative, text, checkout)):
            problems[relative] = found
    assert not problems, "paths outside the repository (a fresh clone has nothing beside it):\n" + "\n".join(
        f"  {name}: {'; '.join(found)}" for name, found in problems.items()
    )


@pytest.mark.parametrize(
    ("relative", "line"),
    [
        ("tests/support/corpus.py", 'CORPUS = Path(__file__).resolve().parents[3] / "shared" / "http-corpus"'),
        ("tests/support/corpus.py", "ROOT = Path(__file__).parent.parent.parent.parent"),
        ("README.md", "The corpus in `../shared/http-corpus` is checked"),
        ("docs/design.md", "see [the target](../../shared/DESIGN.md)"),
        ("servers/base.py", "read /work/shared/DESIGN.md first"),
        ("conf/x.yaml", "corpus: /home/alice/http-corpus"),
        (".ci/run", "cd ../stressbench-data"),
    ],
)
def test_the_rules_catch_what_they_are_for(relative: str, line: str) -> None:
    assert violations(relative, line, "/nowhere/checkout/")


@pytest.mark.parametrize(
    ("relative", "line"),
    [
        ("tests/support/corpus.py", 'CORPUS = Path(__file__).resolve().parents[1] / "data" / "http-corpus"'),
        ("runner/config.py", 'CONF_DIR = Path(__file__).resolve().parent.parent / "conf"'),
        ("docs/design.md", "the commands are in [the README](../README.md)"),
        ("runner/run/resources.py", "read /proc/{pid}/status; #!/usr/bin/env bash; tail /tmp/ci-apt.log"),
        ("README.md", "hydra.sweep.dir=/shared/stressbench/sweep1 and GET /next, https://example.org/home/x"),
        ("servers/http.py", "a/../b is normalised; ..; x/.. and a/b/../c"),
    ],
)
def test_the_rules_leave_the_tree_s_own_paths_alone(relative: str, line: str) -> None:
    assert not violations(relative, line, "/nowhere/checkout/")


def test_ci_hides_exactly_the_programs_the_tests_treat_as_optional() -> None:
    """.ci/run's bare-machine pass hides the programs tests/support/programs.py lists for the `needs` marker, and
    its second pass installs them: a program added to one list and not the other would go untested on one machine."""
    from support.programs import OPTIONAL

    line = re.search(r"^optional=\((.*)\)$", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    assert line is not None, ".ci/run has no optional=(...) line"
    assert line[1].split() == list(OPTIONAL)
