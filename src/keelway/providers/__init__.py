"""Provider adapters, discovered through the ``keelway.providers`` entry points."""

from keelway.providers.registry import ProviderNotFound, load_provider_class

__all__ = ["ProviderNotFound", "load_provider_class"]
