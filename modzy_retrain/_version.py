"""The package version, in one place (read by hatchling and ``modzy_retrain.__version__``)."""

__version__ = "0.1.0.dev0"
"""The version of the installed modzy_retrain, as PEP 440 spells it."""
