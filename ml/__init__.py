"""opslab: logic for the notebooks, the pipeline and the service."""
