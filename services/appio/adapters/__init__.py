"""Adapters of the App IO service's ports to real systems."""
