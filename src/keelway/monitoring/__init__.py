"""Metrics, and later drift, alerts and user feedback."""
