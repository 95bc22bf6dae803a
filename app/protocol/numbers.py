"""Reading integers from text that strangers send: ASCII digits only.

str.isdigit() also accepts "²" (which int() refuses) and int() accepts "٣" and "1_000": a number
in an HTTP head (decoded as latin-1), a Retry-After value or a webhook field is read only when it
is plain 0-9.
"""
from __future__ import annotations


def ascii_digits(text: str) -> bool:
    """Whether text is one or more of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()


def parse_ascii_int(text: str, *, signed: bool = False, max_digits: int | None = None) -> int | None:
    """The integer text spells in ASCII digits (with a leading "-" when signed), else None;
    None as well for more than max_digits digits."""
    digits = text[1:] if signed and text.startswith("-") else text
    if not ascii_digits(digits) or (max_digits is not None and len(digits) > max_digits):
        return None
    return int(text)
