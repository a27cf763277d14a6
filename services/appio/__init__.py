"""App IO: profile checks and messages within IO's limits."""
