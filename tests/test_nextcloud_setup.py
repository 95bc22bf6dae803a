"""The Nextcloud set-up kit: webhook registration through OCS, occ-setup.sh, the bridge app's PHP."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from app.cli import main
from app.nextcloud.ocs import (
    BRIDGE_EVENT,
    CALENDAR_OBJECT_EVENTS,
    MOVED_EVENT,
    OCSError,
    WebhookRegistrar,
    birthday_filter,
    receiver_uri,
)
from tests.ocs_stub import OCSStub, StubServer, matches

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "nextcloud_setup"
DAVPUSH = "https://cloud.example.com"
RECEIVER = "https://cloud.example.com/push/webhooks/nextcloud"
SECRET = "webhook-secret-0123456789abcdef"
PASSWORD = "admin-app-password-123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("NEXTCLOUD_URL", "UPSTREAM_URL", "NEXTCLOUD_APP_PASSWORD", "PUBLIC_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stub():
    return OCSStub(admin="admin", password=PASSWORD)


@pytest.fixture
def server(stub):
    with StubServer(stub) as running:
        yield running


def register(server, *extra, user="admin", password=PASSWORD, secret=SECRET):
    return main([
        "nextcloud", "register-webhooks", "--nextcloud-url", server.url, "--user", user,
        "--app-password", password, "--davpush-url", DAVPUSH, "--secret", secret, *extra,
    ])


def unregister(server, *extra):
    return main([
        "nextcloud", "unregister-webhooks", "--nextcloud-url", server.url, "--user", "admin",
        "--app-password", PASSWORD, "--davpush-url", DAVPUSH, *extra,
    ])


def no_secrets(text: str) -> None:
    assert PASSWORD not in text
    assert SECRET not in text


# --- register-webhooks ---------------------------------------------------------------------

def test_register_creates_one_hook_per_calendar_object_event(server, stub, capsys):
    assert register(server) == 0
    out, err = capsys.readouterr()
    assert stub.violations == []
    assert sorted(h["event"] for h in stub.hooks.values()) == sorted(CALENDAR_OBJECT_EVENTS)
    for hook_id, hook in stub.hooks.items():
        assert hook["uri"] == RECEIVER
        assert hook["authMethod"] == "header"
        assert hook["eventFilter"] == []
        assert stub.clear_auth[hook_id] == {"Authorization": f"Bearer {SECRET}"}
    # The list was asked for our URI only, then six creates with every key explicit.
    assert stub.seen[0].method == "GET" and stub.seen[0].args == {"uri": RECEIVER}
    creates = [s for s in stub.seen if s.method == "POST"]
    assert len(creates) == 6
    for seen in creates:
        assert seen.body["userIdFilter"] is None and seen.body["headers"] is None
        assert seen.body["eventFilter"] is None
    assert "create OCP\\Calendar\\Events\\CalendarObjectCreatedEvent (id " in out
    assert "6 created" in out
    no_secrets(out + err)


def test_register_with_bridge_adds_the_bridge_event(server, stub, capsys):
    stub.compatible.add(BRIDGE_EVENT)
    assert register(server, "--with-bridge") == 0
    assert len(stub.hooks) == 7
    assert BRIDGE_EVENT in {h["event"] for h in stub.hooks.values()}
    assert stub.violations == []


def test_bridge_without_the_app_is_a_clear_error(server, stub, capsys):
    assert register(server, "--with-bridge") == 1
    out, err = capsys.readouterr()
    assert "not an event class compatible with webhooks" in err
    assert "dav_push_bridge" in err
    assert len(err.strip().splitlines()) == 1
    no_secrets(out + err)


def test_second_run_keeps_everything(server, stub, capsys):
    assert register(server) == 0
    capsys.readouterr()
    before = len(stub.seen)
    assert register(server) == 0
    out, _ = capsys.readouterr()
    assert [s.method for s in stub.seen[before:]] == ["GET"]
    assert out.count("keep ") == 6 and "create" not in out.replace("0 created", "")
    assert "keep OCP\\Calendar\\Events\\CalendarObjectUpdatedEvent (id 2)" in out


def test_dry_run_changes_nothing(server, stub, capsys):
    assert register(server, "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert stub.hooks == {} and stub.mutations == []
    assert out.count("create OCP\\Calendar\\Events\\") == 6
    assert "dry run" in out


def test_exclude_birthday_calendar_sets_the_filter(server, stub, capsys):
    stub.compatible.add(BRIDGE_EVENT)
    assert register(server, "--exclude-birthday-calendar", "--with-bridge") == 0
    filters = {h["event"]: h["eventFilter"] for h in stub.hooks.values()}
    for event in CALENDAR_OBJECT_EVENTS:
        if event == MOVED_EVENT:
            assert filters[event] == []  # sent as null: see birthday_filter()
        else:
            assert filters[event] == {"event.calendarData.uri": {"$ne": "contact_birthdays"}}
    assert filters[BRIDGE_EVENT] == {"event.calendarUri": {"$ne": "contact_birthdays"}}

    # Running again without the flag puts the filters back to none.
    capsys.readouterr()
    assert register(server, "--with-bridge") == 0
    out, _ = capsys.readouterr()
    assert out.count("event filter differs") == 6
    assert all(h["eventFilter"] == [] for h in stub.hooks.values())


def _object_envelope(event_class, calendar_uri):
    return {"event": {"calendarId": 9, "calendarData": {"id": 9, "uri": calendar_uri,
                                                          "principaluri": "principals/users/alice"},
                      "shares": [], "objectData": {"uri": "x.ics"}, "class": event_class},
            "user": None, "time": 1}


def test_birthday_filters_do_what_they_say():
    created = "OCP\\Calendar\\Events\\CalendarObjectCreatedEvent"
    assert not matches(birthday_filter(created), _object_envelope(created, "contact_birthdays"))
    assert matches(birthday_filter(created), _object_envelope(created, "personal"))
    # The single-calendar filter would not filter moves at all ($ne on a missing key matches),
    # so moves get no filter: both sides are ordinary calendars or one of them is.
    moved = {"event": {"sourceCalendarData": {"uri": "work"}, "targetCalendarData": {"uri": "personal"},
                       "class": MOVED_EVENT}, "user": None, "time": 1}
    assert matches({"event.calendarData.uri": {"$ne": "contact_birthdays"}}, moved)
    assert birthday_filter(MOVED_EVENT) is None
    bridge = birthday_filter(BRIDGE_EVENT)
    assert not matches(bridge, {"event": {"kind": "calendar-object", "calendarUri": "contact_birthdays"}})
    assert matches(bridge, {"event": {"kind": "calendar", "calendarUri": "personal"}})
    assert matches(bridge, {"event": {"kind": "card", "addressBookUri": "contacts"}})


def test_rotate_secret_updates_every_hook_with_post(server, stub, capsys):
    assert register(server) == 0
    capsys.readouterr()
    before = len(stub.seen)
    new_secret = "a-brand-new-secret-9876543210"
    assert register(server, "--rotate-secret", secret=new_secret) == 0
    out, err = capsys.readouterr()
    calls = stub.seen[before:]
    assert [c.method for c in calls] == ["GET"] + ["POST"] * 6
    assert all(c.path.rsplit("/", 1)[1].isdigit() for c in calls[1:])  # POST /webhooks/{id}
    assert len(stub.hooks) == 6
    assert all(a == {"Authorization": f"Bearer {new_secret}"} for a in stub.clear_auth.values())
    assert out.count("secret rotated") == 6
    assert new_secret not in out + err
    assert stub.violations == []


def test_changed_auth_method_is_updated_and_duplicates_removed(server, stub, capsys):
    first = stub.add_hook(RECEIVER, CALENDAR_OBJECT_EVENTS[0], auth_method="none")
    duplicate = stub.add_hook(RECEIVER, CALENDAR_OBJECT_EVENTS[0], auth_data={"Authorization": "Bearer x"})
    assert register(server) == 0
    out, _ = capsys.readouterr()
    assert f"update {CALENDAR_OBJECT_EVENTS[0]} (id {first}): authentication differs" in out
    assert f"delete {CALENDAR_OBJECT_EVENTS[0]} (id {duplicate}): duplicate" in out
    assert duplicate not in stub.hooks and stub.hooks[first]["authMethod"] == "header"
    assert len(stub.hooks) == 6


def test_bridge_only_replaces_the_stock_hooks(server, stub, capsys):
    stub.compatible.add(BRIDGE_EVENT)
    foreign = stub.add_hook("https://other.example/hook", CALENDAR_OBJECT_EVENTS[0])
    assert register(server) == 0
    assert register(server, "--bridge-only") == 0
    out, _ = capsys.readouterr()
    ours = [h for h in stub.hooks.values() if h["uri"] == RECEIVER]
    assert [h["event"] for h in ours] == [BRIDGE_EVENT]
    assert foreign in stub.hooks
    assert out.count("not wanted any more") == 6


def test_environment_defaults(server, stub, monkeypatch, capsys):
    monkeypatch.setenv("NEXTCLOUD_APP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PUBLIC_URL", DAVPUSH + "/")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("UPSTREAM_URL", server.url)
    assert main(["nextcloud", "register-webhooks", "--user", "admin"]) == 0
    assert len(stub.hooks) == 6 and all(h["uri"] == RECEIVER for h in stub.hooks.values())
    no_secrets("".join(capsys.readouterr()))


# --- unregister-webhooks -------------------------------------------------------------------

@pytest.mark.parametrize("server_ignores_filter", [False, True])
def test_unregister_removes_only_ours(server, stub, capsys, server_ignores_filter):
    stub.ignore_uri_filter = server_ignores_filter
    foreign = stub.add_hook("https://other.example/push/webhooks/nextcloud", CALENDAR_OBJECT_EVENTS[1])
    similar = stub.add_hook(RECEIVER + "/", CALENDAR_OBJECT_EVENTS[2])
    assert register(server) == 0
    capsys.readouterr()

    assert unregister(server, "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert len(stub.hooks) == 8 and out.count("delete ") == 6

    assert unregister(server) == 0
    out, _ = capsys.readouterr()
    assert set(stub.hooks) == {foreign, similar}
    assert "6 deleted" in out
    assert stub.violations == []


# --- failures ------------------------------------------------------------------------------

def test_wrong_password_is_exit_1_without_leaking_it(server, stub, capsys):
    wrong = "not-the-password-777"
    assert register(server, password=wrong) == 1
    out, err = capsys.readouterr()
    assert "401" in err and "credentials" in err
    assert len(err.strip().splitlines()) == 1
    assert wrong not in out + err
    no_secrets(out + err)
    assert stub.hooks == {}


def test_non_admin_is_exit_1(server, stub, capsys):
    assert register(server, user="bob", password="bob-app-password-456") == 1
    _, err = capsys.readouterr()
    assert "403" in err and "admin" in err


def test_nextcloud_before_32_is_a_clear_error(server, stub, capsys):
    stub.compatible.clear()
    assert register(server) == 1
    _, err = capsys.readouterr()
    assert "Nextcloud 32" in err and "HTTP 400" in err


def test_unreachable_nextcloud(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["nextcloud", "register-webhooks", "--nextcloud-url", f"http://127.0.0.1:{port}",
                 "--user", "admin", "--app-password", PASSWORD, "--davpush-url", DAVPUSH, "--secret", SECRET])
    assert code == 1
    out, err = capsys.readouterr()
    assert "cannot reach Nextcloud" in err and len(err.strip().splitlines()) == 1
    no_secrets(out + err)


def test_non_json_answer(server, capsys):
    code = main(["nextcloud", "unregister-webhooks", "--nextcloud-url", server.url + "/html",
                 "--user", "admin", "--app-password", PASSWORD, "--davpush-url", DAVPUSH])
    assert code == 1
    _, err = capsys.readouterr()
    assert "not OCS JSON" in err and "text/html" in err


def test_missing_webhook_listeners_app(server, capsys):
    code = main(["nextcloud", "unregister-webhooks", "--nextcloud-url", server.url + "/nextcloud",
                 "--user", "admin", "--app-password", PASSWORD, "--davpush-url", DAVPUSH])
    assert code == 1
    assert "occ app:enable webhook_listeners" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--user", "admin", "--app-password", "x", "--davpush-url", DAVPUSH, "--secret", SECRET], "--nextcloud-url"),
        (["--nextcloud-url", "http://nc", "--app-password", "x", "--davpush-url", DAVPUSH, "--secret", SECRET], "--user"),
        (["--nextcloud-url", "http://nc", "--user", "a", "--davpush-url", DAVPUSH, "--secret", SECRET], "--app-password"),
        (["--nextcloud-url", "http://nc", "--user", "a", "--app-password", "x", "--secret", SECRET], "--davpush-url"),
        (["--nextcloud-url", "http://nc", "--user", "a", "--app-password", "x", "--davpush-url", DAVPUSH], "--secret"),
        (["--nextcloud-url", "http://nc", "--user", "a", "--app-password", "x", "--davpush-url", DAVPUSH,
          "--secret", "short"], "16"),
        (["--nextcloud-url", "ftp://nc", "--user", "a", "--app-password", "x", "--davpush-url", DAVPUSH,
          "--secret", SECRET], "not an absolute"),
    ],
)
def test_missing_or_bad_options_are_exit_2(argv, needle, capsys):
    assert main(["nextcloud", "register-webhooks", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_registrar_api_directly(server, stub):
    registrar = WebhookRegistrar(server.url, "admin", PASSWORD)
    assert PASSWORD not in repr(registrar)
    actions = registrar.plan(RECEIVER, SECRET, CALENDAR_OBJECT_EVENTS[:2])
    assert [a.kind for a in actions] == ["create", "create"]
    assert all(SECRET not in repr(a) for a in actions)
    done = registrar.apply(actions)
    assert [a.id for a in done] == [1, 2]
    assert [h["id"] for h in registrar.list(uri=RECEIVER)] == [1, 2]
    assert [a.kind for a in registrar.unregister(RECEIVER)] == ["delete", "delete"]
    assert registrar.list() == []


def test_receiver_uri():
    assert receiver_uri("https://cloud.example.com") == RECEIVER
    assert receiver_uri("https://cloud.example.com/") == RECEIVER
    assert receiver_uri(RECEIVER) == RECEIVER
    with pytest.raises(OCSError):
        receiver_uri("https://user:pw@cloud.example.com")


# --- occ-setup.sh --------------------------------------------------------------------------

READ_ONLY_OCC = ("app:list", "config:system:get", "config:app:get", "webhook_listeners:list", "status")


def fake_occ(tmp_path: Path, enabled: bool) -> tuple[Path, Path]:
    log = tmp_path / "occ.log"
    listing = "Enabled:\\n  - dav: 1.3.0\\n" + ("  - webhook_listeners: 1.3.0\\n" if enabled else "")
    listing += "Disabled:\\n" + ("" if enabled else "  - webhook_listeners: 1.3.0\\n")
    script = tmp_path / "occ"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'case "$1" in\n'
        f"  app:list) printf '{listing}' ;;\n"
        "  config:system:get) exit 1 ;;\n"
        "  config:app:get) echo cron ;;\n"
        "  webhook_listeners:list) echo '[]' ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script, log


def run_setup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP / "occ-setup.sh"), *args], capture_output=True, text=True, timeout=60)


def test_occ_setup_dry_run_prints_the_plan_and_changes_nothing(tmp_path):
    occ, log = fake_occ(tmp_path, enabled=False)
    result = run_setup("--dry-run", "--occ", str(occ), "--davpush-url", "http://127.0.0.1:8000",
                       "--workers", "3", "--unit-dir", str(tmp_path / "units"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{occ} app:enable webhook_listeners" in out
    assert "config:system:set allow_local_remote_servers --value=true --type=boolean" in out
    assert "nextcloud-webhook-worker@.service" in out
    assert "background-job:worker -v -t 60" in out and "RuntimeMaxSec=1d" in out
    assert "enable --now nextcloud-webhook-worker@1.service nextcloud-webhook-worker@2.service " \
           "nextcloud-webhook-worker@3.service" in out
    assert "nextcloud-webhook-worker@4.service" not in out
    assert "webhook_listeners:list --output=json_pretty" in out
    assert "davpush nextcloud register-webhooks" in out
    assert not (tmp_path / "units").exists()
    calls = log.read_text().splitlines() if log.exists() else []
    assert all(call.split()[0] in READ_ONLY_OCC for call in calls), calls


def test_occ_setup_public_receiver_needs_no_local_exception(tmp_path):
    occ, _ = fake_occ(tmp_path, enabled=False)
    result = run_setup("--dry-run", "--occ", str(occ), "--davpush-url", "https://93.184.216.34/")
    assert result.returncode == 0, result.stderr
    assert "allow_local_remote_servers" not in result.stdout
    assert "enable --now nextcloud-webhook-worker@1.service nextcloud-webhook-worker@2.service\n" in result.stdout


def test_occ_setup_run_is_idempotent(tmp_path):
    occ, log = fake_occ(tmp_path, enabled=True)
    systemctl = tmp_path / "systemctl"
    sys_log = tmp_path / "systemctl.log"
    systemctl.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{sys_log}"\n[[ "$1" == is-enabled ]] && exit 1\nexit 0\n')
    systemctl.chmod(0o755)
    args = ("--occ", str(occ), "--davpush-url", "https://93.184.216.34", "--unit-dir", str(tmp_path / "units"),
            "--systemctl", str(systemctl))
    first = run_setup(*args)
    assert first.returncode == 0, first.stderr
    assert "already enabled" in first.stdout
    unit = (tmp_path / "units" / "nextcloud-webhook-worker@.service").read_text()
    assert "User=www-data" in unit and "Restart=always" in unit
    assert '"OCA\\\\WebhookListeners\\\\BackgroundJobs\\\\WebhookCall"' in unit
    second = run_setup(*args)
    assert "is up to date" in second.stdout
    calls = log.read_text().splitlines()
    assert all(call.split()[0] in READ_ONLY_OCC for call in calls), calls
    assert sys_log.read_text().count("daemon-reload") == 1


def test_occ_setup_stop_after_zero_leaves_out_t(tmp_path):
    result = run_setup("--dry-run", "--davpush-url", "http://127.0.0.1:8000", "--stop-after", "0")
    assert result.returncode == 0, result.stderr
    assert "background-job:worker -v \"OCA" in result.stdout and " -t " not in result.stdout


@pytest.mark.parametrize("workers", ["1", "5", "x"])
def test_occ_setup_rejects_bad_worker_counts(workers):
    result = run_setup("--dry-run", "--davpush-url", "http://127.0.0.1:8000", "--workers", workers)
    assert result.returncode == 2 and "--workers" in result.stderr


# --- bridge app ----------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("php") is None, reason="php not installed")
def test_bridge_app_php_syntax():
    result = subprocess.run(["bash", str(SETUP / "check-php.sh")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("No syntax errors detected") == 3


def test_check_php_skips_without_php(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no php (nor anything else) on PATH
    result = subprocess.run([shutil.which("bash"), str(SETUP / "check-php.sh")], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 0 and "php not installed; skipped" in result.stdout


def test_bridge_event_contract_is_documented():
    text = (SETUP / "bridge_app" / "EVENT.md").read_text()
    for key in ("kind", "op", "addressBookId", "addressBookUri", "calendarId", "calendarUri", "ownerPrincipal",
                "syncToken", "sharePrincipals", "objectUri", "targetAddressBookId", "targetCalendarUri",
                "targetOwnerPrincipal", "targetSyncToken"):
        assert f"`{key}`" in text, key
