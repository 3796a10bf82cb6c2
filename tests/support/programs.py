"""Programs the project uses where they are installed and never requires, with how to install each.

A test that needs one is marked `@pytest.mark.needs("nginx")` (tests/conftest.py): without the program it
skips, saying this. .ci/run runs the suite once with each of these hidden (a bare machine) and the marked
tests once more with them installed; its `optional=(...)` line names these same programs
(tests/test_repository.py checks that the two agree).
"""

OPTIONAL = {
    "nginx": "Debian: apt-get install nginx",
    "wrk": "Debian: apt-get install wrk",
    "chromium": "Debian: apt-get install chromium",  # tests/runner/report/test_html.py drives it headless
}
