"""Monitoring: drift of inputs (drift, timeline, evidently), references saved with models, the quality gate."""
