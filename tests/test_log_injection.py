"""Nobody can write a line of their own into the service log: CR, LF and other control characters
in request paths, messages, fields and exception texts are escaped (text and JSON formats)."""
import io
import json
import logging
import re
import time

import pytest
import requests

from app.core.logs import _UNSAFE, JsonFormatter, TextFormatter, escape_control, log

FORGED = "2030-01-01 00:00:00,000 INFO    davpush.access [-] request method=GET path=/forged status=200"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def captured():
    """The root logger's output in one format; yields (use(format) -> StringIO)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()

    def use(fmt: str) -> io.StringIO:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        return stream

    yield use
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_crlf_in_an_unauthenticated_dav_path_stays_in_its_line(gateway, captured):
    stream = captured("text")
    response = requests.get(gateway.dav("/x%0d%0a" + FORGED.replace(" ", "%20")))
    assert response.status_code in (401, 404)  # nothing about it is the gateway's business
    lines = lines_of(stream)
    access = [line for line in lines if " davpush.access " in line]
    assert len(access) == 1 and "\\r\\n2030-01-01" in access[0]
    assert all(RECORD_START.match(line) for line in lines)
    assert not any(line.startswith("2030-") for line in lines)


def test_crlf_outside_the_dav_prefix_too(gateway, captured):
    stream = captured("text")
    assert requests.get(gateway.url + "/nowhere%0a" + FORGED.replace(" ", "%20")).status_code == 404
    assert not any(line.startswith("2030-") for line in lines_of(stream))


def test_json_lines_keep_the_path_as_one_escaped_value(gateway, captured):
    stream = captured("json")
    requests.get(gateway.dav("/x%0d%0a" + FORGED.replace(" ", "%20")))
    entries = [json.loads(line) for line in lines_of(stream)]  # every line is one whole JSON object
    [access] = [entry for entry in entries if entry["logger"] == "davpush.access"]
    assert access["path"].startswith("/remote.php/dav/x\r\n2030-")


@pytest.mark.parametrize("hostile", ["\r", "\n", "\x85", "\u2028", "\x1b[2J", "\x00", "\x7f", "\u202e"])
def test_every_control_character_is_escaped_in_messages_and_fields(captured, hostile):
    stream = captured("text")
    log(logging.getLogger("davpush.test"), logging.INFO, f"message{hostile}end", user=f"bob{hostile}end")
    [line] = stream.getvalue().split("\n")[:-1]
    assert hostile not in line
    assert re.search(r"\] message\\\S+end user=bob\\\S+end$", line), line


def test_field_values_cannot_fake_other_fields(captured):
    stream = captured("text")
    log(logging.getLogger("davpush.test"), logging.INFO, "request", path='/a status=200 user="admin"', status=404)
    [line] = lines_of(stream)
    assert line.endswith('path="/a status=200 user=\\"admin\\"" status=404')


def test_a_traceback_stays_readable_and_its_lines_cannot_start_a_record(captured):
    stream = captured("text")
    try:
        raise ValueError("bad value\n" + FORGED + "\r\n" + FORGED)
    except ValueError:
        logging.getLogger("davpush.test").exception("failed on\r\n%s", FORGED)
    first, *rest = lines_of(stream)
    assert RECORD_START.match(first) and first.endswith("failed on\\r\\n" + FORGED)
    assert rest[0] == "  | Traceback (most recent call last):"
    assert all(line.startswith("  | ") for line in rest)
    assert "  | ValueError: bad value" in rest and f"  | {FORGED}\\r" in rest


def test_json_format_escapes_every_control_character(captured):
    stream = captured("json")
    hostile = "a\r\nb\x85c\u2028d\x7fe\x1bf"
    try:
        raise ValueError(hostile)
    except ValueError:
        logging.getLogger("davpush.test").exception(hostile)
    log(logging.getLogger("davpush.test"), logging.INFO, "x", field=hostile)
    text = stream.getvalue()
    assert all(c not in text for c in "\r\x85\u2028\x7f\x1b")
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["msg"] for e in entries] == [hostile, "x"]
    assert entries[0]["exc"].endswith("ValueError: " + hostile) and entries[1]["field"] == hostile


def test_every_unsafe_character_is_escaped_and_printable_text_is_left_as_it_is():
    for code in _UNSAFE:
        escaped = escape_control(f"a{chr(code)}b")
        assert chr(code) not in escaped and escaped.isprintable(), hex(code)
    assert escape_control("Grüße aus /remote.php/dav/ ✓") == "Grüße aus /remote.php/dav/ ✓"


def test_text_lines_start_with_the_time_of_the_record(captured):
    stream = captured("text")
    before = time.time()
    log(logging.getLogger("davpush.test"), logging.INFO, "tick")
    log(logging.getLogger("davpush.test"), logging.INFO, "tock")
    after = time.time()
    for line in lines_of(stream):
        stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
        assert stamp, line
        when = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000
        assert before - 0.001 <= when <= after + 0.001, line
