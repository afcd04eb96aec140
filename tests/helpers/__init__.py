"""Test machinery shared by the test files (daemons, the shipped store, simulated sync
clients, MLflow clients); the fixtures built on it are in tests/conftest.py."""
