"""Parsing push-register bodies as real clients send them (protocol doc §4, §14)."""
import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.protocol import xmlsafe
from app.protocol.registration import RegistrationError, parse_registration
from app.protocol.triggers import Triggers


def b64(data: bytes, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


KEY = b64(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
AUTH = b64(b"0123456789abcdef")


def parse(body: str):
    return parse_registration(xmlsafe.parse(body.encode(), max_bytes=65536))


def davx5_old(key=KEY, auth=AUTH, expires="Thu, 27 Aug 2026 19:17:11 GMT") -> str:
    # DAVx5 <= 4.5.19: generated prefix, no trigger, no content-encoding, no whitespace.
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<n0:push-register xmlns:n0="https://bitfire.at/webdav-push"><n0:subscription><n0:web-push-subscription>'
        "<n0:push-resource>https://ntfy.example.org/upAbCdEf?up=1</n0:push-resource>"
        f'<n0:subscription-public-key type="p256dh">{key}</n0:subscription-public-key>'
        f"<n0:auth-secret>{auth}</n0:auth-secret>"
        f"</n0:web-push-subscription></n0:subscription><n0:expires>{expires}</n0:expires></n0:push-register>"
    )


def davx5_new() -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<n0:push-register xmlns:n0="https://bitfire.at/webdav-push" xmlns:n1="DAV:"><n0:subscription>'
        "<n0:web-push-subscription><n0:push-resource>https://ntfy.example.org/upAbCdEf?up=1</n0:push-resource>"
        "<n0:content-encoding>aes128gcm</n0:content-encoding>"
        f'<n0:subscription-public-key type="p256dh">{KEY}</n0:subscription-public-key>'
        f"<n0:auth-secret>{AUTH}</n0:auth-secret></n0:web-push-subscription></n0:subscription>"
        "<n0:trigger><n0:content-update><n1:depth>1</n1:depth></n0:content-update>"
        "<n0:property-update><n1:depth>0</n1:depth></n0:property-update></n0:trigger>"
        "<n0:expires>Thu, 27 Aug 2026 19:17:11 GMT</n0:expires></n0:push-register>"
    )


def draft_example(trigger: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8" ?>
<push-register xmlns="https://bitfire.at/webdav-push" xmlns:D="DAV:">
  <subscription>
    <web-push-subscription>
      <push-resource>https://up.example.net/yohd4yai5Phiz1wi</push-resource>
      <content-encoding>aes128gcm</content-encoding>
      <subscription-public-key type="p256dh">{KEY}</subscription-public-key>
      <auth-secret>{AUTH}</auth-secret>
    </web-push-subscription>
  </subscription>
  <trigger>{trigger}</trigger>
  <expires>Wed, 20 Dec 2023 10:03:31 GMT</expires>
</push-register>"""


def test_davx5_without_trigger_means_content_updates_depth_1():
    registration = parse(davx5_old())
    assert registration.triggers == Triggers(content_depth="1")
    assert registration.subscription.push_resource == "https://ntfy.example.org/upAbCdEf?up=1"
    assert registration.subscription.content_encoding == "aes128gcm"
    assert registration.requested_expiry.isoformat() == "2026-08-27T19:17:11+00:00"


def test_davx5_current_form_keeps_both_triggers():
    registration = parse(davx5_new())
    assert registration.triggers.content_depth == "1"
    assert registration.triggers.property_depth == "0"


def test_draft_example_clamps_infinity_and_keeps_prop_list():
    registration = parse(draft_example(
        "<content-update><D:depth>infinity</D:depth></content-update>"
        "<property-update><D:depth>0</D:depth><D:prop><D:displayname/><D:owner/></D:prop></property-update>"))
    assert registration.triggers.content_depth == "1"
    assert registration.triggers.properties == ("{DAV:}displayname", "{DAV:}owner")


@pytest.mark.parametrize("depth", ["infinite", "INFINITY", " 1 "])
def test_old_and_odd_depth_spellings(depth):
    registration = parse(draft_example(f"<content-update><D:depth>{depth}</D:depth></content-update>"))
    assert registration.triggers.content_depth == "1"


def test_property_depth_one_downgraded_to_zero():
    registration = parse(draft_example("<property-update><D:depth>1</D:depth></property-update>"))
    assert registration.triggers == Triggers(property_depth="0")


def test_chiri_style_prefixes_and_padding_tolerated():
    body = (
        '<P:push-register xmlns:P="https://bitfire.at/webdav-push" xmlns:d="DAV:"><P:subscription><P:web-push-subscription>'
        "<P:push-resource>https://push.example.com/x</P:push-resource><P:content-encoding>aes128gcm</P:content-encoding>"
        f'<P:subscription-public-key type="p256dh">{KEY}=</P:subscription-public-key>'
        f"<P:auth-secret>{b64(b'0123456789abcdef', pad=True)}</P:auth-secret>"
        "</P:web-push-subscription></P:subscription><P:trigger><P:content-update><d:depth>1</d:depth></P:content-update>"
        "</P:trigger></P:push-register>"
    )
    registration = parse(body)
    assert registration.subscription.public_key == KEY  # stored without padding
    assert registration.requested_expiry is None


def test_old_client_public_key_alias_accepted():
    registration = parse(davx5_old().replace("subscription-public-key", "client-public-key"))
    assert registration.subscription.public_key == KEY


@pytest.mark.parametrize(
    "body, message",
    [
        (draft_example("<content-update><D:depth>1</D:depth></content-update>").replace(
            "<content-encoding>aes128gcm", "<content-encoding>aesgcm"), "content-encoding"),
        (davx5_old(key=b64(b"\x04" + b"\x01" * 64)), "curve"),
        (davx5_old(key=KEY[:40]), "65-byte"),
        (davx5_old(key=KEY.replace("-", "+").replace("_", "/") + "+/"), "base64url"),
        (davx5_old(auth=b64(b"short")), "16 bytes"),
        (davx5_old().replace(f"<n0:auth-secret>{AUTH}</n0:auth-secret>", ""), "auth-secret"),
        (davx5_old().replace('type="p256dh"', 'type="p384"'), "p384"),
        ('<push-register xmlns="https://bitfire.at/webdav-push"><subscription/></push-register>', "web-push"),
        ('<push-register xmlns="https://bitfire.at/webdav-push"/>', "subscription"),
    ],
)
def test_invalid_subscriptions_are_403_invalid_subscription(body, message):
    with pytest.raises(RegistrationError) as caught:
        parse(body)
    assert (caught.value.status, caught.value.precondition) == (403, "invalid-subscription")
    assert message in caught.value.message


def test_missing_public_key_is_refused():
    body = davx5_old().replace(f'<n0:subscription-public-key type="p256dh">{KEY}</n0:subscription-public-key>', "")
    with pytest.raises(RegistrationError) as caught:
        parse(body)
    assert caught.value.precondition == "invalid-subscription"


@pytest.mark.parametrize("trigger", ["", "<content-update><D:depth>7</D:depth></content-update>", "<unknown-update/>"])
def test_no_supported_trigger(trigger):
    with pytest.raises(RegistrationError) as caught:
        parse(draft_example(trigger))
    assert (caught.value.status, caught.value.precondition) == (403, "no-supported-trigger")


@pytest.mark.parametrize("expires", ["garbage", "", "Wed, 32 Dec 2023 10:03:31 GMT", "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_unparsable_expiry_is_ignored_not_fatal(expires):
    assert parse(davx5_old(expires=expires)).requested_expiry is None


@pytest.mark.parametrize(
    "document",
    [b"", b"   ", b"<push-register", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'],
)
def test_malformed_xml_is_an_xml_error(document):
    with pytest.raises(xmlsafe.XmlError):
        xmlsafe.parse(document, max_bytes=65536)


def test_deep_nesting_refused():
    with pytest.raises(xmlsafe.XmlError, match="nested"):
        xmlsafe.parse(b"<a>" * 100 + b"</a>" * 100, max_bytes=65536)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le"])
def test_root_tag_refuses_a_dtd_in_any_encoding(encoding):
    declaration = "" if encoding == "utf-16-le" else f'<?xml version="1.0" encoding="{encoding}"?>'
    document = (declaration + '<!DOCTYPE x [<!ENTITY a "b">]><x:push-register xmlns:x="urn:y">&a;</x:push-register>')
    with pytest.raises(xmlsafe.XmlError, match="DTD"):
        xmlsafe.root_tag(document.encode(encoding))


@pytest.mark.parametrize("read", [xmlsafe.root_tag, lambda data: xmlsafe.parse(data, max_bytes=65536)])
def test_unknown_encoding_is_an_xml_error(read):
    with pytest.raises(xmlsafe.XmlError, match="encoding"):
        read(b'<?xml version="1.0" encoding="x-unknown"?><a/>')


def test_root_tag_of_a_truncated_document():
    document = '<?xml version="1.0" encoding="utf-16"?><P:push-register xmlns:P="https://bitfire.at/webdav-push"><P:sub'
    assert xmlsafe.root_tag(document.encode("utf-16")) == "{https://bitfire.at/webdav-push}push-register"
