"""Guardrails: scanners that check requests and answers, and the policies that
decide what happens when one triggers."""
