"""The Procfile's web entry (`gunicorn wsgi:app` from the repository root); the entry itself is
packaged as app.web.wsgi, which `davpush web` runs from any directory."""
from app.web.wsgi import app  # noqa: F401
