"""How every `davpush` command reports a failure: one line on stderr, and an exit status."""
from __future__ import annotations

import sys

# Exit statuses: 0 done, 1 the operation failed (a refusal, an unreachable service),
# 2 missing or bad options or settings.
FAILED, USAGE = 1, 2


def fail(message: str, code: int = FAILED) -> int:
    """Print `davpush: message` to stderr; the exit status to return."""
    print(f"davpush: {message}", file=sys.stderr)
    return code
