"""The installed package's version, for provenance in reports and model folders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fm3d")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
