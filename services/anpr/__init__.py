"""ANPR: resident look-ups through PDND, registry certificates through web service 6001."""
