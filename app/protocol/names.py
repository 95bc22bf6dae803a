"""XML namespaces and qualified names used by WebDAV, CalDAV, CardDAV and WebDAV-Push."""

DAV = "DAV:"
PUSH = "https://bitfire.at/webdav-push"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
OWNCLOUD = "http://owncloud.org/ns"
NEXTCLOUD = "http://nextcloud.com/ns"
SABRE = "http://sabredav.org/ns"

PREFIXES = {DAV: "d", PUSH: "P", CALDAV: "cal", CARDDAV: "card", OWNCLOUD: "oc", NEXTCLOUD: "nc", SABRE: "s"}


def qn(namespace: str, local: str) -> str:
    """ElementTree's {namespace}local form."""
    return f"{{{namespace}}}{local}"


def split_qn(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


PUSH_PROPS = ("transports", "topic", "supported-triggers")
PUSH_PROP_TAGS = tuple(qn(PUSH, name) for name in PUSH_PROPS)

D_PROP = qn(DAV, "prop")
D_PROPSTAT = qn(DAV, "propstat")
D_STATUS = qn(DAV, "status")
D_RESPONSE = qn(DAV, "response")
D_HREF = qn(DAV, "href")
D_RESOURCETYPE = qn(DAV, "resourcetype")
D_OWNER = qn(DAV, "owner")
D_CURRENT_USER_PRINCIPAL = qn(DAV, "current-user-principal")
D_SYNC_TOKEN = qn(DAV, "sync-token")
D_DEPTH = qn(DAV, "depth")
CAL_CALENDAR = qn(CALDAV, "calendar")
CARD_ADDRESSBOOK = qn(CARDDAV, "addressbook")
OC_OWNER_PRINCIPAL = qn(OWNCLOUD, "owner-principal")
