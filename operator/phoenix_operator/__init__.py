"""Phoenix operator: reconciles PhoenixAuth resources (Kopf)."""

from importlib.metadata import version

# The installed distribution's version, which setuptools read from the repo's VERSION file (the one
# source of the version); the auth image the operator deploys by default carries the same tag.
__version__ = version("phoenix-operator")
