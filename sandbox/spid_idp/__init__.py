"""SPID test IdP twin (SAML2): signs responses and assertions for synthetic citizens."""

PORT = 8106
