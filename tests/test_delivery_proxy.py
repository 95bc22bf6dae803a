"""PUSH_PROXY: pushes go out through an HTTP proxy (CONNECT tunnels for https push services, plain
forwarding for http ones), with its credentials sent to the proxy only; the SSRF guard still
checks each endpoint's name before anything is sent."""
import ipaddress
import ssl

import pytest

from app.core.config import ConfigError, load_settings
from app.delivery.egress_proxy import parse_proxy_url
from app.delivery.outcomes import BLOCKED, RETRY, SUCCESS
from support.forward_proxy import ForwardProxy
from support.push_receiver import ClientKeys
from support.raw_http import RawHTTPServer, self_signed_certificate
from support.senders import VAPID, names, push_request, sender_maker
from support.servers import free_port
from support.stored import one_pending_push

BODY = b"encrypted push"


def push(url, sub_id="s"):
    return push_request(url, sub_id, body=BODY)


@pytest.fixture
def push_service():
    with RawHTTPServer() as server:
        yield server


@pytest.fixture
def tls_push_service(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "push.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RawHTTPServer(tls=context) as server:
        server.ca = cert
        yield server


@pytest.fixture
def make_sender():
    with sender_maker() as make:
        yield make


def test_an_http_push_is_forwarded_by_the_proxy(push_service, make_sender):
    with ForwardProxy() as proxy:
        sender = make_sender(proxy=proxy.url)
        url = push_service.url("/push/1?x=1")
        [outcome] = sender.send_all([push(url)], lambda origin: VAPID)
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    assert proxy.forwarded == [url] and proxy.tunnels == []
    [received] = push_service.requests
    assert (received.target, received.body, received.headers["authorization"]) == ("/push/1?x=1", BODY, VAPID)


def test_an_https_push_goes_through_a_tunnel_and_tls_checks_the_push_services_name(tls_push_service, make_sender):
    with ForwardProxy(hosts={"push.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=proxy.url, allow_http=False, resolver=names({"push.test": "127.0.0.1"}),
                             ssl_context=ssl.create_default_context(cafile=str(tls_push_service.ca)))
        pushes = [push(tls_push_service.url(f"/p{i}", host="push.test", scheme="https"), f"s{i}") for i in range(3)]
        outcomes = sender.send_all(pushes, lambda origin: VAPID)
    assert {(o.kind, o.status) for o in outcomes} == {(SUCCESS, 201)}
    assert set(proxy.tunnels) == {f"push.test:{tls_push_service.port}"} and proxy.forwarded == []
    assert sorted(r.target for r in tls_push_service.requests) == ["/p0", "/p1", "/p2"]
    assert {r.headers["host"] for r in tls_push_service.requests} == {f"push.test:{tls_push_service.port}"}


def test_an_https_proxy_carries_the_tunnel_inside_its_own_tls(tls_push_service, tmp_path, make_sender):
    (tmp_path / "proxy").mkdir()
    proxy_cert, proxy_key = self_signed_certificate(tmp_path / "proxy", "proxy.test")
    proxy_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    proxy_tls.load_cert_chain(proxy_cert, proxy_key)
    trust = ssl.create_default_context(cafile=str(tls_push_service.ca))
    trust.load_verify_locations(cafile=str(proxy_cert))
    with ForwardProxy(hosts={"push.test": "127.0.0.1"}, tls=proxy_tls) as proxy:
        sender = make_sender(proxy=f"https://proxy.test:{proxy.port}", allow_http=False, ssl_context=trust,
                             resolver=names({"push.test": "127.0.0.1", "proxy.test": "127.0.0.1"}))
        [outcome] = sender.send_all([push(tls_push_service.url("/x", host="push.test", scheme="https"))],
                                    lambda origin: VAPID)
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    assert proxy.tunnels == [f"push.test:{tls_push_service.port}"]
    assert [r.target for r in tls_push_service.requests] == ["/x"]


def test_a_certificate_for_another_name_is_refused_through_the_tunnel_too(tls_push_service, make_sender):
    with ForwardProxy(hosts={"other.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=proxy.url, allow_http=False, resolver=names({"other.test": "127.0.0.1"}),
                             ssl_context=ssl.create_default_context(cafile=str(tls_push_service.ca)))
        [outcome] = sender.send_all([push(tls_push_service.url("/x", host="other.test", scheme="https"))],
                                    lambda origin: VAPID)
    assert (outcome.kind, outcome.detail) == (RETRY, "SSLError")
    assert tls_push_service.requests == []


def test_proxy_credentials_go_to_the_proxy_and_never_to_the_push_service(push_service, tls_push_service, make_sender):
    with ForwardProxy(credentials=("pusher", "s3cret:@"), hosts={"push.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=proxy.url_with("pusher", "s3cret%3A%40"),
                             resolver=names({"push.test": "127.0.0.1", "127.0.0.1": "127.0.0.1"}),
                             ssl_context=ssl.create_default_context(cafile=str(tls_push_service.ca)))
        plain, tunnelled = sender.send_all([push(push_service.url("/plain"), "plain")], lambda o: VAPID), \
            sender.send_all([push(tls_push_service.url("/tls", host="push.test", scheme="https"), "tls")], lambda o: VAPID)
    assert [(o.kind, o.status) for o in plain + tunnelled] == [(SUCCESS, 201)] * 2
    assert proxy.refused == [] and len(proxy.forwarded) == 1 and len(proxy.tunnels) == 1
    for received in push_service.requests + tls_push_service.requests:
        assert not any(name.startswith("proxy-") for name in received.headers)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_wrong_proxy_credentials_are_a_retry_and_nothing_reaches_the_push_service(
        push_service, tls_push_service, make_sender, scheme):
    service = push_service if scheme == "http" else tls_push_service
    with ForwardProxy(credentials=("pusher", "right"), hosts={"push.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=proxy.url_with("pusher", "wrong"), resolver=names({"push.test": "127.0.0.1"}),
                             ssl_context=ssl.create_default_context(cafile=str(tls_push_service.ca)))
        [outcome] = sender.send_all([push(service.url("/x", host="push.test", scheme=scheme))], lambda o: VAPID)
    assert (outcome.kind, outcome.detail) == (RETRY, "ProxyError 407")
    assert len(proxy.refused) == 1 and service.requests == []


def test_the_ssrf_guard_checks_the_endpoint_before_anything_goes_to_the_proxy(make_sender):
    with ForwardProxy(hosts={"intranet.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=proxy.url, resolver=names({"intranet.test": "10.0.0.5"}))
        [outcome] = sender.send_all([push("http://intranet.test/admin")], lambda o: VAPID)
    assert outcome.kind == BLOCKED
    assert proxy.forwarded == [] and proxy.tunnels == [] and proxy.refused == []


def test_the_proxy_itself_may_be_on_a_private_network(push_service, make_sender):
    # PUSH_ALLOWED_NETWORKS is about push endpoints; the proxy is the operator's own choice
    endpoint_net = (ipaddress.ip_network("127.0.0.2/32"),)
    with ForwardProxy(hosts={"push.test": "127.0.0.1"}) as proxy:
        sender = make_sender(proxy=f"http://proxy.test:{proxy.port}", allowed_networks=endpoint_net,
                             resolver=names({"proxy.test": "127.0.0.1", "push.test": "127.0.0.2"}))
        [outcome] = sender.send_all([push(push_service.url("/x", host="push.test"))], lambda o: VAPID)
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    assert proxy.forwarded == [push_service.url("/x", host="push.test")]


def test_an_unreachable_proxy_is_a_retry(push_service, make_sender):
    sender = make_sender(proxy=f"http://127.0.0.1:{free_port()}")
    [outcome] = sender.send_all([push(push_service.url("/x"))], lambda o: VAPID)
    assert (outcome.kind, outcome.detail) == (RETRY, "ProxyError")
    assert push_service.requests == []


# -- the setting ------------------------------------------------------------------------------------


def test_a_worker_with_push_proxy_delivers_through_it(make_services, receiver):
    with ForwardProxy() as proxy:
        from app.jobs import runtime

        services = make_services(PUSH_PROXY=proxy.url_with("pusher", "pw"))
        keys = ClientKeys.generate()
        topic = one_pending_push(services, receiver.endpoint("/s1"), keys, token=7)
        result = runtime.use_context(services).deliverer.deliver_topic(topic)
    assert result["outcomes"] == {"success": 1}
    assert proxy.forwarded == [receiver.endpoint("/s1")]
    [received] = receiver.wait_for(1)
    assert b"sync/7" in received.decrypt(keys)


@pytest.mark.parametrize("value, problem", [
    ("socks5://127.0.0.1:1080", "must start with http:// or https://"),
    ("http://", "has no host"),
    ("http://proxy.example:3128/path", "no path or query"),
    ("http://user:hunter2@proxy.example:99999", "is not a valid URL"),
])
def test_an_unusable_push_proxy_is_refused_without_echoing_it(make_env, value, problem):
    with pytest.raises(ConfigError) as error:
        load_settings(make_env(PUSH_PROXY=value))
    assert problem in str(error.value) and "PUSH_PROXY" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_push_proxy_credentials_stay_out_of_the_settings_repr(make_env):
    settings = load_settings(make_env(PUSH_PROXY="http://pusher:hunter2@proxy.example:3128"))
    assert settings.push_proxy == "http://pusher:hunter2@proxy.example:3128"
    assert "hunter2" not in repr(settings)
    proxy = parse_proxy_url(settings.push_proxy)
    assert proxy.label == "http://proxy.example:3128" and "hunter2" not in repr(proxy)
