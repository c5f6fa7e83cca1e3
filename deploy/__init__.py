"""pinship: lock layered requirements with pip-tools and deploy the exact same bytes everywhere."""

from deploy.errors import DeployError

__all__ = ["DeployError"]
