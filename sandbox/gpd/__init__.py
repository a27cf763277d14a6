"""Sandbox twin of pagoPA GPD (debt positions v1 + bulk v2), on 127.0.0.1:8101."""

PORT = 8101
