"""Synthetic operations data: sensor telemetry with labelled anomalies and a ServiceNow-like incident history.

Pure functions of their arguments and a seed: `sensors` (telemetry), `incidents` (history, snapshots,
batches) with its `catalogues` and ticket `text`, shared `common` pieces; `export` writes the landing zone
(`python -m ml.data.synth --params params.yaml`).
"""
