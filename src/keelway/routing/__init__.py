"""Model groups and the choice of a deployment for each request."""

from keelway.routing.router import Deployment, ModelNotFound, Router

__all__ = ["Deployment", "ModelNotFound", "Router"]
