"""Adapters of the spid service to the outside world."""
