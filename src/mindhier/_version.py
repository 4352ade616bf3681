"""The package version, in a module of its own so that the library reads it without importing the package root.

`pyproject.toml` states it too (`[project] version`); a test keeps the two equal.
"""

__version__ = "0.1.0.dev0"
