"""Experiments on prompt versions: A/B tests, shadow traffic and significance tests."""
