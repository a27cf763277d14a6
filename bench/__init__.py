"""Benchmarks: each prints its figures and the ratio to the limit it chases (not tests)."""
