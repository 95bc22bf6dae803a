"""The push sender against push services that answer in awkward ways, byte for byte.

A raw-socket server (support/raw_http.py) answers with chunk extensions and trailers, 1xx interim
answers, Connection: close, HTTP/1.0, close-delimited and oversized bodies, Retry-After, garbage,
hang-ups and a never-ending drip. What is checked is what a user of the service would notice: the
outcome (kind, status, retry_after), the request as the push service received it, and how many
connections were used.

Already covered elsewhere, so not repeated here: redirects, a silent server (read timeout),
connection refused, loopback blocked at send time, a name resolving to a private address,
Authorization/TTL headers and the per-origin in-flight limit (test_delivery_rules.py); TLS with
a trusted certificate, a certificate for another name, plain chunked and 100 kB Content-Length
answers (test_delivery_tls.py).
"""
import socket
import ssl

import pytest

from app.delivery import guarded_dns
from app.delivery import sender as sender_module
from app.delivery.outcomes import BLOCKED, REJECTED, RETRY, SUCCESS
from support.raw_http import CREATED, RawHTTPServer, drip, hang_up, in_parts, reply, self_signed_certificate
from support.senders import VAPID, push_request, sender_maker
from support.senders import pinned as pinned_resolver

BODY = bytes(range(256)) + b"encrypted" * 5  # binary, like a real aes128gcm body


@pytest.fixture
def server():
    with RawHTTPServer() as running:
        yield running


@pytest.fixture
def make_sender():
    with sender_maker(concurrency=16, connect_timeout=1, read_timeout=0.5) as make:
        yield make


@pytest.fixture
def sender(make_sender):
    return make_sender()


def push(url, sub_id="s", headers=None, make_body=lambda: BODY):
    if headers is None:
        headers = {"TTL": "60", "Content-Encoding": "aes128gcm"}
    return push_request(url, sub_id, headers=headers, make_body=make_body)


def send_one(sender, url, authorization=VAPID, **kwargs):
    [outcome] = sender.send_all([push(url, **kwargs)], lambda origin: authorization)
    return outcome


# -- the request as the push service receives it ---------------------------------------------------


@pytest.mark.parametrize(
    "path, target",
    [
        ("/push/1?x=1", "/push/1?x=1"),
        ("/é?q=ü", "/%C3%A9?q=%C3%BC"),
        ("/caf%C3%A9/ü", "/caf%C3%A9/%C3%BC"),  # escapes already there are kept, not encoded twice
    ],
    ids=["ascii", "non-ascii", "partly-escaped"],
)
def test_the_push_arrives_as_one_well_formed_request(server, sender, path, target):
    outcome = send_one(sender, server.url(path))
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    [received] = server.requests
    assert received.line == f"POST {target} HTTP/1.1"
    assert received.headers["host"] == f"127.0.0.1:{server.port}"
    assert received.headers["content-length"] == str(len(BODY))
    assert received.body == BODY


# -- answers that leave the connection usable: the next push reuses it -------------------------------

KEEP_ALIVE_ANSWERS = {
    "empty-with-location": b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /m/1\r\n\r\n",
    "small-body": b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello",
    "chunked-extension-and-trailer": (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"5;name=value\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"),
    "interim-100-and-103": (b"HTTP/1.1 100 Continue\r\n\r\n"
                            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
}


@pytest.mark.parametrize("answer", KEEP_ALIVE_ANSWERS.values(), ids=KEEP_ALIVE_ANSWERS.keys())
def test_a_complete_answer_keeps_the_connection_for_the_next_push(server, sender, answer):
    server.script("/awkward", answer)
    first = send_one(sender, server.url("/awkward"))
    second = send_one(sender, server.url("/next"))
    assert (first.kind, first.status) == (SUCCESS, 201)
    assert (second.kind, second.status) == (SUCCESS, 201)
    assert [(r.target, r.connection) for r in server.requests] == [("/awkward", 1), ("/next", 1)]


# -- answers after which the connection must not be reused ------------------------------------------
# The server keeps the connection open unless closing is what delimits the answer, so a sender that
# wrongly reused it would send the next push down the same connection (and, after the cut-short
# chunked body, read leftover chunks as the next answer).

# 100 kB in 4 KiB chunks, paused just after the size line of the second chunk: at that point the
# sender has nothing unread in hand, yet the rest of the body is still to come.
BIG_CHUNKED = in_parts(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + b"1000\r\n" + b"z" * 4096 + b"\r\n" + b"1000\r\n",
                       b"z" * 4096 + b"\r\n" + (b"1000\r\n" + b"z" * 4096 + b"\r\n") * 23 + b"0\r\n\r\n")
ENDING_ANSWERS = {
    "connection-close": (reply(b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
                         SUCCESS, 201),
    "http-1.0": (reply(b"HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n"), SUCCESS, 201),
    "body-until-close": (reply(b"HTTP/1.1 201 Created\r\n\r\nsome body until close", close=True), SUCCESS, 201),
    "chunked-body-over-4-kib": (BIG_CHUNKED, REJECTED, 400),
}


@pytest.mark.parametrize("answer, kind, status", ENDING_ANSWERS.values(), ids=ENDING_ANSWERS.keys())
def test_an_answer_that_ends_the_connection_is_used_and_the_next_push_opens_a_new_one(
        server, sender, answer, kind, status):
    server.script("/awkward", answer)
    first = send_one(sender, server.url("/awkward"))
    second = send_one(sender, server.url("/next"))
    assert (first.kind, first.status) == (kind, status)
    assert (second.kind, second.status) == (SUCCESS, 201)
    assert [(r.target, r.connection) for r in server.requests] == [("/awkward", 1), ("/next", 2)]


# -- answers that say "later" ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, status, retry_after",
    [
        (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n", 429, 120),
        # a date in the past still means "retry", after the smallest wait
        (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n",
         503, 1),
    ],
    ids=["429-seconds", "503-past-date"],
)
def test_retry_after_from_the_answer_reaches_the_outcome(server, sender, answer, status, retry_after):
    server.script("/busy", answer)
    outcome = send_one(sender, server.url("/busy"))
    assert (outcome.kind, outcome.status, outcome.retry_after) == (RETRY, status, retry_after)


# -- answers that are not usable HTTP: retried, and they do not poison the next push --------------------

BROKEN_ANSWERS = {
    "not-http": (reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "ProtocolError"),
    "conflicting-content-length": (reply(b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
                                   "ProtocolError"),
    "head-over-64-kib": (reply(b"HTTP/1.1 201 Created\r\nX-Pad: " + b"p" * 70_000 + b"\r\n\r\n"), "ProtocolError"),
    "hang-up": (hang_up(), "RemoteDisconnected"),
    # one byte every 50 ms for 5 s: only a timeout on the whole answer (0.5 s here) ends this;
    # a per-read timeout would wait for the server to give up and report a ProtocolError
    "slow-drip": (drip(b"HTTP/1.1 201 Created\r\n", interval=0.05, limit=5), "ReadTimeoutError"),
}


@pytest.mark.parametrize("answer, detail", BROKEN_ANSWERS.values(), ids=BROKEN_ANSWERS.keys())
def test_a_broken_answer_is_retried_and_the_next_push_still_gets_through(server, sender, answer, detail):
    server.script("/broken", answer)
    outcome = send_one(sender, server.url("/broken"))
    after = send_one(sender, server.url("/next"))
    assert (outcome.kind, outcome.status, outcome.detail) == (RETRY, None, detail)
    assert (after.kind, after.status) == (SUCCESS, 201)
    assert [(r.target, r.connection) for r in server.requests] == [("/broken", 1), ("/next", 2)]


# -- pushes refused before anything is sent ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers, authorization",
    [
        ({"TTL": "60", "X-Evil": "a\r\nInjected: 1"}, VAPID),
        ({"TTL": "60\nInjected: 1"}, VAPID),
        ({"TTL": "60", "Topic": "a\x00b"}, VAPID),
        ({"TTL": "60"}, "vapid t=T\r\nInjected: 1"),
    ],
    ids=["crlf-in-extra-header", "lf-in-ttl", "nul-in-topic", "crlf-in-authorization"],
)
def test_a_header_value_with_cr_lf_or_nul_is_refused_before_sending(server, sender, headers, authorization):
    outcome = send_one(sender, server.url("/x"), authorization=authorization, headers=headers)
    assert (outcome.kind, outcome.status) == (REJECTED, None)
    assert server.connections == 0


def test_plain_http_is_refused_unless_allowed(server, make_sender):
    outcome = send_one(make_sender(allow_http=False), server.url("/x"))
    assert (outcome.kind, outcome.status) == (BLOCKED, None)
    assert server.connections == 0


def test_a_push_that_cannot_be_encrypted_is_rejected_and_the_others_still_go_out(server, sender):
    def cannot_encrypt():
        raise ValueError("not a point on the curve")

    pushes = [push(server.url("/bad"), "bad", make_body=cannot_encrypt), push(server.url("/good"), "good")]
    result = sender.send_all(pushes, lambda origin: VAPID)
    by_id = {o.subscription_id: o for o in result}
    assert len(result) == 2
    assert by_id["bad"].kind == REJECTED and by_id["bad"].detail.startswith("encryption failed")
    assert (by_id["good"].kind, by_id["good"].status) == (SUCCESS, 201)
    assert [r.target for r in server.requests] == ["/good"]


def test_a_host_name_that_does_not_resolve_is_retried_not_blocked(make_sender):
    def resolver(host, port, type=0):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    outcome = send_one(make_sender(resolver=resolver), "http://push.invalid/x")
    assert (outcome.kind, outcome.status) == (RETRY, None)


# -- DNS: the name is pinned to the checked address, and checked again when it is resolved again ------


def test_a_name_that_later_resolves_to_a_private_address_is_blocked_despite_an_open_connection(
        server, make_sender, monkeypatch):
    monkeypatch.setattr(guarded_dns, "RESOLVE_TTL", 0.0)  # every push resolves the name again
    addresses = {"push.test": "127.0.0.1"}
    sender = make_sender(resolver=pinned_resolver(addresses))
    url = server.url("/x", host="push.test")
    first = send_one(sender, url)
    addresses["push.test"] = "10.0.0.1"  # rebinding: same name, now an internal address
    second = send_one(sender, url)
    assert (first.kind, first.status) == (SUCCESS, 201)
    assert server.requests[0].headers["host"] == f"push.test:{server.port}"  # the name, not the address
    assert second.kind == BLOCKED
    assert len(server.requests) == 1  # the kept-alive connection to the old address was not used either


# -- many pushes to one service ----------------------------------------------------------------------


def test_many_pushes_to_one_service_share_at_most_per_origin_keep_alive_connections(server, make_sender):
    server.script("/p", reply(CREATED, delay=0.002))  # short enough to be fast, long enough for overlap
    sender = make_sender(per_origin=4)
    ids = [f"s{i}" for i in range(200)]
    result = sender.send_all([push(server.url(f"/p?i={i}"), sub_id) for i, sub_id in enumerate(ids)],
                             lambda origin: VAPID)
    assert sorted(o.subscription_id for o in result) == sorted(ids)  # exactly one outcome per push
    assert {o.kind for o in result} == {SUCCESS}
    assert len(server.requests) == 200
    assert server.connections <= 4


# -- TLS: the sender's own default context ---------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "push.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RawHTTPServer(tls=context) as running:
        yield running, cert


@pytest.mark.parametrize("in_system_store", [False, True], ids=["unknown-ca", "ca-in-system-store"])
def test_the_default_tls_context_trusts_the_system_store_only(tls_server, make_sender, monkeypatch, in_system_store):
    server, cert = tls_server
    if in_system_store:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by OpenSSL when the sender builds its context
    sender = make_sender(allow_http=False, resolver=pinned_resolver({"push.test": "127.0.0.1"}))  # no ssl_context
    outcome = send_one(sender, server.url("/x", host="push.test", scheme="https"))
    if in_system_store:
        assert (outcome.kind, outcome.status) == (SUCCESS, 201)
        assert [r.target for r in server.requests] == ["/x"]
    else:
        assert (outcome.kind, outcome.status, outcome.detail) == (RETRY, None, "SSLError")
        assert server.requests == []


# -- internationalised host names ----------------------------------------------------------------------


@pytest.mark.parametrize("name, ascii_name", [("bücher.test", "xn--bcher-kva.test"), ("пуш.test", "xn--o1aip.test")],
                         ids=["latin-1", "cyrillic"])
def test_an_internationalised_host_name_is_sent_in_its_ascii_form(server, make_sender, name, ascii_name):
    sender = make_sender(resolver=pinned_resolver({name: "127.0.0.1"}))
    outcome = send_one(sender, server.url("/x", host=name))
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    assert server.requests[0].headers["host"] == f"{ascii_name}:{server.port}"


# -- hostile answers: numbers that are not ASCII digits -------------------------------------------------
# Answer heads are decoded as latin-1, so a byte like 0xB2 arrives as "²": str.isdigit() says yes, int()
# says no. Such an answer must cost only its own push, never the batch it travels in.

HOSTILE_NUMBERS = {
    # an unusable Retry-After counts as absent: the usual backoff applies
    "retry-after-superscript": (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n",
                                (RETRY, 429, None, "")),
    "content-length-superscript": (b"HTTP/1.1 201 Created\r\nContent-Length: \xb2\r\n\r\n",
                                   (RETRY, None, None, "ProtocolError")),
    # three characters, like a real status code: "2²1"
    "status-superscript": (b"HTTP/1.1 2\xb21 Created\r\nContent-Length: 0\r\n\r\n",
                           (RETRY, None, None, "ProtocolError")),
    "status-superscript-four-chars": (b"HTTP/1.1 2\xb201 Created\r\nContent-Length: 0\r\n\r\n",
                                      (RETRY, None, None, "ProtocolError")),
}


@pytest.mark.parametrize("answer, expected", HOSTILE_NUMBERS.values(), ids=HOSTILE_NUMBERS.keys())
def test_a_number_that_is_not_ascii_digits_costs_only_its_own_push(server, sender, answer, expected):
    server.script("/hostile", reply(answer, close=True))
    pushes = [push(server.url("/good/1"), "good1"), push(server.url("/hostile"), "hostile"),
              push(server.url("/good/2"), "good2"), push(server.url("/good/3"), "good3")]
    result = sender.send_all(pushes, lambda origin: VAPID)
    assert sorted(o.subscription_id for o in result) == ["good1", "good2", "good3", "hostile"]
    by_id = {o.subscription_id: o for o in result}
    assert {(by_id[i].kind, by_id[i].status) for i in ("good1", "good2", "good3")} == {(SUCCESS, 201)}
    hostile = by_id["hostile"]
    assert (hostile.kind, hostile.status, hostile.retry_after, hostile.detail) == expected
    assert send_one(sender, server.url("/after")).kind == SUCCESS  # the sender is still fine


def test_a_content_length_of_thousands_of_digits_is_just_a_large_body(server, sender):
    # int() refuses decimal strings over 4300 digits; this must not escape as a ValueError either
    server.script("/huge", reply(b"HTTP/1.1 201 Created\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\nsome", close=True))
    pushes = [push(server.url("/huge"), "huge"), push(server.url("/good"), "good")]
    by_id = {o.subscription_id: o for o in sender.send_all(pushes, lambda origin: VAPID)}
    assert (by_id["huge"].kind, by_id["huge"].status) == (SUCCESS, 201)
    assert (by_id["good"].kind, by_id["good"].status) == (SUCCESS, 201)


def test_an_unexpected_error_while_sending_one_push_costs_only_that_push(server, sender, monkeypatch):
    real = sender_module.parse_retry_after

    def broken(value, *args, **kwargs):
        if value == "boom":
            raise RuntimeError("a bug nobody foresaw")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(sender_module, "parse_retry_after", broken)
    server.script("/busy", b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: boom\r\nContent-Length: 0\r\n\r\n")
    pushes = [push(server.url("/busy"), "busy")] + [push(server.url(f"/good/{i}"), f"good{i}") for i in range(3)]
    result = sender.send_all(pushes, lambda origin: VAPID)
    by_id = {o.subscription_id: o for o in result}
    assert len(result) == 4 and set(by_id) == {"busy", "good0", "good1", "good2"}
    assert (by_id["busy"].kind, by_id["busy"].status, by_id["busy"].detail) == (RETRY, None, "RuntimeError")
    assert all((by_id[f"good{i}"].kind, by_id[f"good{i}"].status) == (SUCCESS, 201) for i in range(3))
    # the connection of the failed push was closed, not handed to the next push
    assert send_one(sender, server.url("/after")).kind == SUCCESS
    connection_of = {r.target: r.connection for r in server.requests}
    assert connection_of["/after"] != connection_of["/busy"]
