"""Traces, spans, token usage and cost."""
