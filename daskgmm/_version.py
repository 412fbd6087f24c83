"""The package's version, in a module of its own: the modules that write it
into files import it without importing the package (whose ``__init__``
imports them)."""

__version__ = "0.1.0"
