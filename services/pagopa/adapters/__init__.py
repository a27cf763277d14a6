"""Real adapters of the pagopa ports (GPD over HTTP)."""
