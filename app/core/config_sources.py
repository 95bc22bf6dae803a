"""Where a setting's value comes from: the variable itself, or a file named by `<NAME>_FILE`
(the convention of container and systemd credentials), with errors that say what is wrong."""
from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Mapping


class SourceError(Exception):
    """A value cannot be read; str() is one printable line naming the variable."""


# Placeholders the shipped examples use: a copied example must not run with them.
_PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|<[^>]*>|^x+$|^(secret|password|example)$", re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.search(value))


def value_or_file(env: Mapping[str, str], name: str) -> tuple[str, str]:
    """(value, where it came from): `name` itself or the file in `name_FILE`; never both."""
    direct = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if direct and path:
        raise SourceError(f"set either {name} or {name}_FILE, not both")
    if path:
        return read_file(path, f"{name}_FILE").decode("utf-8", "replace").strip(), f"{name}_FILE"
    return direct, name


def read_file(path: str, variable: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise SourceError(f"{variable}={path!r} does not exist") from None
    except PermissionError:
        raise SourceError(f"{variable}={path!r}: permission denied ({describe_access(path)})") from None
    except IsADirectoryError:
        raise SourceError(f"{variable}={path!r} is a directory, not a file") from None
    except OSError as error:
        raise SourceError(f"{variable}={path!r} cannot be read: {error.strerror}") from None


def describe_access(path: str) -> str:
    """'owned by root:davpush, mode 0640; this process runs as davpush' (what to fix, no guessing)."""
    try:
        info = os.stat(path)
    except OSError as error:
        return error.strerror or "cannot stat"
    return (f"owned by {_user(info.st_uid)}:{_group(info.st_gid)}, mode {info.st_mode & 0o7777:04o}; "
            f"this process runs as {_user(os.geteuid())}")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
