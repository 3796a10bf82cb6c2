"""`python -m runner`: the orchestrator's command line (runner/run/cli.py)."""

from runner.run.cli import main

if __name__ == "__main__":
    main()
