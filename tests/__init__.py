"""The tests, in folders that mirror guard/ (see tests/conftest.py)."""
