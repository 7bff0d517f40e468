"""The ``modzy-retrain`` command line: build, inspect, demo."""
