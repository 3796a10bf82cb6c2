"""The orchestrator: `python -m runner`'s process. One module per part of a run (the server,
Locust, the samplers, the record) and of a sweep (the command line, the Hydra callback, the exit
status, the machine lock). See runner/run/experiment.py for the steps of one run."""
