"""IdP metadata from where the tenant says: an http(s) URL (AgID registry, the twin) or a file."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.spid.domain.xmlsig import MAX_XML_BYTES

MAX_METADATA_BYTES = 8 * MAX_XML_BYTES  # the aggregated AgID metadata holds every IdP


class HttpOrFileMetadata:
    def __init__(self, timeout_seconds: float = 5.0) -> None:
        self.timeout = timeout_seconds

    def fetch(self, location: str) -> bytes:
        if location.startswith(("https://", "http://")):
            response = httpx.get(location, timeout=self.timeout, follow_redirects=False)
            response.raise_for_status()
            data = response.content
        else:
            data = Path(location).read_bytes()
        if len(data) > MAX_METADATA_BYTES:
            raise ValueError("metadata document too large")
        return data
