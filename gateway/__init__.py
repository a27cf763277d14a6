"""The API gateway: the one HTTP API of the platform, spec-first (openapi.yaml is the contract)."""
