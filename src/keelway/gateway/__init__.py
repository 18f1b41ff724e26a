"""The ASGI app: OpenAI- and Anthropic-compatible routes and the request pipeline."""

from keelway.gateway.app import create_app

__all__ = ["create_app"]
