"""Pure WebDAV-Push protocol logic: XML, validation, expiry, triggers, topics.

Nothing in this package imports Flask, Redis or does network I/O.
"""
