"""Sandbox twin of pagoPA Checkout (EC carts API v2), on 127.0.0.1:8102."""

PORT = 8102
