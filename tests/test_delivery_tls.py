"""The push sender over TLS: certificate checked against the host name while connecting to
the checked address; chunked and oversized answers handled."""
import datetime
import ipaddress
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.delivery import outcomes
from app.delivery.sender import PushRequest, PushSender

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def _cert(subject_name, issuer_name, public_key, signing_key, *, ca, names=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", "test CA", ca_key.public_key(), ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("push.test", "test CA", leaf_key.public_key(), ca_key, ca=False, names=["push.test"])
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return folder


@pytest.fixture
def tls_receiver(pki):
    seen = []

    @Request.application
    def app(request):
        seen.append((request.path, request.environ.get("REMOTE_PORT"), request.get_data()))
        if request.path == "/chunked":
            return Response((part for part in (b"a" * 100, b"b" * 100)), 201)  # streamed: chunked framing
        if request.path == "/big":
            return Response(b"x" * 100_000, 201)
        return Response(b"", 201)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "leaf.pem", pki / "leaf.key")
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, seen
    server.shutdown()


def make_sender(pki, names=("push.test",)):
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def resolver(host, port, type=None):
        if host not in names:
            raise OSError("unknown host")
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    return PushSender(concurrency=4, per_origin=2, connect_timeout=2, read_timeout=2, allow_http=False,
                      allowed_networks=LOOPBACK, resolver=resolver, ssl_context=context)


def push(url, sub_id="s"):
    return PushRequest(sub_id, url, lambda: b"encrypted", {"TTL": "60"})


def test_https_push_verifies_the_certificate_of_the_host_name(pki, tls_receiver):
    port, seen = tls_receiver
    sender = make_sender(pki)
    [outcome] = sender.send_all([push(f"https://push.test:{port}/x")], lambda origin: "vapid t=1")
    assert (outcome.kind, outcome.status) == (outcomes.SUCCESS, 201)
    assert seen[0][0] == "/x" and seen[0][2] == b"encrypted"
    sender.close()


def test_certificate_for_another_name_is_refused(pki, tls_receiver):
    port, seen = tls_receiver
    sender = make_sender(pki, names=("other.test",))
    [outcome] = sender.send_all([push(f"https://other.test:{port}/x")], lambda origin: "vapid t=1")
    assert outcome.kind == outcomes.RETRY and outcome.detail == "SSLError"
    assert seen == []
    sender.close()


def test_chunked_and_oversized_answers_are_handled(pki, tls_receiver):
    port, seen = tls_receiver
    sender = make_sender(pki)
    first = sender.send_all([push(f"https://push.test:{port}/chunked")], lambda origin: "vapid t=1")
    second = sender.send_all([push(f"https://push.test:{port}/big")], lambda origin: "vapid t=1")
    third = sender.send_all([push(f"https://push.test:{port}/x")], lambda origin: "vapid t=1")
    assert [o.kind for o in first + second + third] == [outcomes.SUCCESS] * 3
    assert [path for path, _, _ in seen] == ["/chunked", "/big", "/x"]
    sender.close()
