"""SPID and CIE login, gateway tokens."""
