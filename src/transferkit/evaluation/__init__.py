"""Metrics, forgetting and representation analysis."""
