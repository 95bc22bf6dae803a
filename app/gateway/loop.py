"""Request loops: the mark davpush puts on every request it sends upstream, and recognising it.

Every upstream request carries `Via: 1.1 davpush-<token>` (RFC 9110 §7.6.3: Via exists to
detect loops), appended to any Via the client sent. The token is derived from SECRET_KEY, so
all processes of one installation share it and nobody outside can forge it: a client sending
some other installation's Via gets forwarded as usual. A request that arrives carrying this
installation's token has gone round (UPSTREAM_URL leads back to davpush) and is refused with
508; that answer carries a second derived token, by which the sender knows the 508 is the loop
and not something upstream said.
"""
from __future__ import annotations

import hashlib
import hmac

LOOP_STATUS = 508
ANSWER_HEADER = "X-Davpush-Loop"


def _derive(secret_key: str, purpose: bytes) -> str:
    return hmac.new(secret_key.encode("utf-8"), b"davpush loop " + purpose, hashlib.sha256).hexdigest()[:16]


class LoopMark:
    def __init__(self, secret_key: str):
        self.pseudonym = "davpush-" + _derive(secret_key, b"via")
        self.answer_token = _derive(secret_key, b"answer")
        self.via_entry = f"1.1 {self.pseudonym}"

    def stamp(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """`headers` (name, value pairs) with this installation's Via entry appended."""
        prior = ", ".join(value for name, value in headers if name.lower() == "via" and value)
        stamped = [(name, value) for name, value in headers if name.lower() != "via"]
        stamped.append(("Via", f"{prior}, {self.via_entry}" if prior else self.via_entry))
        return stamped

    def carried_by(self, via: str | None) -> bool:
        """Whether a request's Via header (all values joined) names this installation."""
        for entry in (via or "").split(","):
            fields = entry.split()
            if len(fields) >= 2 and hmac.compare_digest(fields[1].encode(), self.pseudonym.encode()):
                return True
        return False

    def answer_headers(self) -> dict:
        return {ANSWER_HEADER: self.answer_token}

    def is_loop_answer(self, status: int, answer_header: str | None) -> bool:
        """Whether an upstream answer (its status and ANSWER_HEADER) is this installation refusing its own request."""
        if status != LOOP_STATUS:
            return False
        value = answer_header or ""
        return hmac.compare_digest(value.encode(), self.answer_token.encode())
