"""Sandbox twin of ANPR: the PDND e-services C001, C003, C030 (REST + ModI) and web service 6001 (SOAP)."""

PORT = 8105
