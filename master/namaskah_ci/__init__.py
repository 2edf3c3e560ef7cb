"""Namaskah CI: the Buildbot master configuration as an importable package."""
