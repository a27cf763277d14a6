"""Pure SPID/CIE rules: SAML metadata, requests, response validation, sessions (no nameko here)."""
