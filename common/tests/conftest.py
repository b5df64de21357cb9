"""Fixtures for the tests of common/ live in the root conftest.py (shared with the days' tests)."""
