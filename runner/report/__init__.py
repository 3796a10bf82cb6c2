"""The reporter: a directory of runs -> report.md, results.csv, cells.csv, figures
(`python -m runner.report DIR`, runner/report/document.py). Reads result.json files only."""
