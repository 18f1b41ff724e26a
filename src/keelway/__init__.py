"""keelway: a self-hosted LLMOps platform built around an LLM gateway."""

__version__ = "0.1.0"
