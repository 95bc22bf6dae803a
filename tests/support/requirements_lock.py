"""Reading requirements.txt as tools/lock_requirements.py writes it."""
from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
FROM_PYPROJECT = "pyproject.toml"  # the `# via` of pyproject.toml's own dependencies


def read_lock() -> tuple[dict[str, str], dict[str, set[str]], list[str]]:
    """(pinned versions, what needs each pin, requirement lines that are not pins)."""
    pins: dict[str, str] = {}
    via: dict[str, set[str]] = {}
    others: list[str] = []
    last = None
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.strip()
        if line.startswith("# via "):
            via[last] = {part.strip() for part in line.removeprefix("# via ").split(",")}
        elif line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            if sep:
                last = canonicalize_name(name)
                pins[last] = version
            else:
                others.append(line)
    return pins, via, others
