"""Reading the repository's Dockerfile: its instructions, and the image's health check."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def healthcheck_command() -> list[str]:
    [argument] = [argument for instruction, argument in instructions() if instruction == "HEALTHCHECK"]
    return json.loads(argument.split("CMD", 1)[1])
