"""Nextcloud specifics: URL conventions, webhook payloads and the webhook receiver."""
