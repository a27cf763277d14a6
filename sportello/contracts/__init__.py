"""Event contracts between services: the typed payloads every producer and consumer shares.

Why: services never read each other's databases; what one tells the others is an event whose
payload is defined once, here, and published in the AsyncAPI document. Importing this package
registers every type. A published version never changes shape: add a `.v2` instead.
"""

from sportello.contracts import anpr, appio, pagopa

__all__ = ["anpr", "appio", "pagopa"]
