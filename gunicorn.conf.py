"""gunicorn reads this file from the directory it starts in, so the Procfile's `gunicorn wsgi:app`
gets davpush's settings. They live in the package (app/web/gunicorn_conf.py, which `davpush web`
uses from anywhere); this only runs that file. It is run by path, not imported: importing `app`
would load the service's modules before that file has monkey-patched them for gevent."""
from pathlib import Path

_settings_file = Path(__file__).resolve().parent / "app" / "web" / "gunicorn_conf.py"
exec(compile(_settings_file.read_bytes(), str(_settings_file), "exec"))
