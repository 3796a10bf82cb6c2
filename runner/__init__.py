"""stressbench's runner: three programs in three rooms, and the contracts between them.

- `runner/run/`: the orchestrator, the `python -m runner` process. It validates the sweep, starts
  each server, starts Locust, samples both sides, stops everything and writes one result.json.
- `runner/locust/`: code that runs inside Locust's processes (the locustfile, the loop user's
  engine and its HTTP framing, the open model's schedule, two plugins). It never imports the
  orchestrator: the orchestrator hands it its options on Locust's command line.
- `runner/report/`: the reporter, `python -m runner.report DIR`: result.json files in, report.md,
  results.csv and figures out. It reads run directories, never a running experiment.

Beside them, the modules every program shares, each a contract: `schema.py` (every key of a run and
its default; plain dataclasses, so Locust reads it without Hydra), `config.py` (the schema registered
with Hydra, and its checks), `result.py` (the record a run leaves, and how Locust's numbers become
it), `latency.py` (HDR histograms as Locust's processes write them), `capacity.py` (the capacity
search's rule, applied live inside Locust and again by the orchestrator), `schedstat.py` (CPU wait).
Data flows one way: config -> run -> record -> report.
"""
