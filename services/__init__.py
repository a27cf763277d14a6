"""The four Sportello services, one package each; each owns its database and talks over events."""
