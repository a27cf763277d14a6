"""Sandbox twin of the pagoPA Nodo dei Pagamenti (the side that calls a Comune's station), on 127.0.0.1:8109."""

PORT = 8109
