"""Sportello's shared kernel: settings, tenants, logging, events, outbox, inbox, dead letters.

Modules directly under `sportello` are framework-free; nameko and eventlet live in
`sportello.edge` only.
"""
