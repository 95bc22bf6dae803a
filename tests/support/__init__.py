"""Reusable test doubles: WSGI server runner, Nextcloud DAV stub, Radicale runner, Web Push receiver."""
