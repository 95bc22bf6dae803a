"""The WSGI entry point: `gunicorn app.web.wsgi:app` (what `davpush web` runs)."""
import sys

from app import create_app
from app.core.config import ConfigError, load_settings
from app.core.logs import setup_logging

try:
    _settings = load_settings()
except ConfigError as error:
    print(f"davpush: configuration error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
setup_logging(_settings.log_format, _settings.log_level)
app = create_app(_settings)
