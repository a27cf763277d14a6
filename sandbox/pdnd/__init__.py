"""Sandbox twin of the PDND Interoperabilità authorization server (`POST /token.oauth2`)."""

PORT = 8104
