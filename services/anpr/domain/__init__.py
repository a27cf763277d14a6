"""Pure rules of the `anpr` service: no nameko, no eventlet, no database, no network."""
