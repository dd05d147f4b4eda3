"""Serving-engine scrapers: Prometheus text in, token and phase-time counters out."""
