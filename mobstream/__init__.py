"""mobstream: the command-line front and process-wide conventions (settings, errors, paths)."""

__version__ = "0.1.0"
