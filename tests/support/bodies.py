"""Request bodies exactly as real WebDAV-Push clients send them (protocol doc §4, §14)."""
from __future__ import annotations

PUSH_PROPFIND_DAVX5 = (
    b'<?xml version="1.0" encoding="UTF-8"?><propfind xmlns="DAV:" xmlns:CAL="urn:ietf:params:xml:ns:caldav" '
    b'xmlns:P="https://bitfire.at/webdav-push"><prop><resourcetype/><displayname/><CAL:supported-calendar-component-set/>'
    b"<P:transports/><P:topic/></prop></propfind>"
)
PUSH_PROPFIND_TSDAV = (
    b'<d:propfind xmlns:d="DAV:" xmlns:p="https://bitfire.at/webdav-push">'
    b"<d:prop><p:transports/><p:topic/><p:supported-triggers/></d:prop></d:propfind>"
)
XML_UTF8 = "application/xml; charset=UTF-8"


def davx5_old(push_resource: str, p256dh: str, auth: str, expires: str | None = "Thu, 27 Aug 2026 19:17:11 GMT") -> bytes:
    """DAVx5 up to 4.5.19: generated prefix, no trigger, no content-encoding, no whitespace."""
    tail = f"<n0:expires>{expires}</n0:expires>" if expires else ""
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<n0:push-register xmlns:n0="https://bitfire.at/webdav-push"><n0:subscription><n0:web-push-subscription>'
        f"<n0:push-resource>{push_resource}</n0:push-resource>"
        f'<n0:subscription-public-key type="p256dh">{p256dh}</n0:subscription-public-key>'
        f"<n0:auth-secret>{auth}</n0:auth-secret>"
        f"</n0:web-push-subscription></n0:subscription>{tail}</n0:push-register>"
    ).encode()


def davx5_current(push_resource: str, p256dh: str, auth: str, expires: str) -> bytes:
    """DAVx5 after dav4jvm #226/#227: adds trigger and content-encoding."""
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<n0:push-register xmlns:n0="https://bitfire.at/webdav-push" xmlns:n1="DAV:"><n0:subscription>'
        f"<n0:web-push-subscription><n0:push-resource>{push_resource}</n0:push-resource>"
        "<n0:content-encoding>aes128gcm</n0:content-encoding>"
        f'<n0:subscription-public-key type="p256dh">{p256dh}</n0:subscription-public-key>'
        f"<n0:auth-secret>{auth}</n0:auth-secret></n0:web-push-subscription></n0:subscription>"
        "<n0:trigger><n0:content-update><n1:depth>1</n1:depth></n0:content-update>"
        "<n0:property-update><n1:depth>0</n1:depth></n0:property-update></n0:trigger>"
        f"<n0:expires>{expires}</n0:expires></n0:push-register>"
    ).encode()


def chiri(push_resource: str, p256dh: str, auth: str, expires: str | None = None) -> bytes:
    tail = f"<P:expires>{expires}</P:expires>" if expires else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<P:push-register xmlns:P="https://bitfire.at/webdav-push" xmlns:d="DAV:">\n'
        "  <P:subscription>\n    <P:web-push-subscription>\n"
        f"      <P:push-resource>{push_resource}</P:push-resource>\n"
        f'      <P:subscription-public-key type="p256dh">{p256dh}</P:subscription-public-key>\n'
        f"      <P:auth-secret>{auth}</P:auth-secret>\n"
        "      <P:content-encoding>aes128gcm</P:content-encoding>\n"
        "    </P:web-push-subscription>\n  </P:subscription>\n"
        "  <P:trigger><P:content-update><d:depth>1</d:depth></P:content-update>"
        "<P:property-update><d:depth>0</d:depth></P:property-update></P:trigger>\n"
        f"  {tail}\n</P:push-register>"
    ).encode()


def tsdav(push_resource: str, p256dh: str, auth: str, expires: str) -> bytes:
    """tsdav-push: prefix p, Date.toUTCString() expiry."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><p:push-register xmlns:p="https://bitfire.at/webdav-push" xmlns:d="DAV:">'
        f"<p:subscription><p:web-push-subscription><p:push-resource>{push_resource}</p:push-resource>"
        "<p:content-encoding>aes128gcm</p:content-encoding>"
        f'<p:subscription-public-key type="p256dh">{p256dh}</p:subscription-public-key>'
        f"<p:auth-secret>{auth}</p:auth-secret></p:web-push-subscription></p:subscription>"
        "<p:trigger><p:content-update><d:depth>infinity</d:depth></p:content-update></p:trigger>"
        f"<p:expires>{expires}</p:expires></p:push-register>"
    ).encode()
