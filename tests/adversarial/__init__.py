"""Adversarial scenarios, each in its own process (see conftest.py)."""
