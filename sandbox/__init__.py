"""Sandbox twins of the national platforms, speaking their official contracts, plus demo tenants."""
