"""The production loop's parts (docs/operations.md): the retrain policy and its decisions, the service client;
the entry points are `python -m ml.retrain` and `python -m ml.scheduler`."""
