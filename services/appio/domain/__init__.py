"""Pure App IO rules: message content and its limits, templates, the delivery state machine.

No nameko, eventlet, HTTP or database here: these modules are plain Python, tested alone.
"""
