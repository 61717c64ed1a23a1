"""Incident models: SLA breach, time to resolution, triage, similar incidents, clustering, system/team."""
