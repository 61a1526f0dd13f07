"""The asymlora version (one home: the package, run records and the build read it)."""

__version__ = "0.1.0"
