"""pagoPA domain rules: plain Python, no framework (nameko/eventlet never imported here)."""
