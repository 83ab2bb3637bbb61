"""Benchmarks reuse the test fixtures (Home Assistant, the test camera, the hub)."""

pytest_plugins = ["tests.conftest"]
