"""Sandbox twin of App IO's Services API (`../shared/specs/appio/index.yaml`), base path /api/v1.

Same contract and validation as IO, IO's real rate limit (about 150 requests / 5 s per key,
429 + Retry-After beyond it), seeded synthetic citizens (some not on IO, some who blocked the
Comune's service, some preferring English), message status progression, switchable faults, and
counters per fiscal code so tests can assert exactly-once. `python -m sandbox.appio`.
"""

PORT = 8103
