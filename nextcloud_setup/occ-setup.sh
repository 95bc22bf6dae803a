#!/usr/bin/env bash
# Nextcloud-side set-up for davpush: everything occ (and systemd) can do.
#
#   1. enable the bundled webhook_listeners app (if it is not enabled yet);
#   2. allow requests to local/private addresses when davpush runs on this host or the LAN;
#   3. install a systemd template nextcloud-webhook-worker@.service and start N workers, so
#      webhooks leave within about a second instead of waiting for cron (up to 5 minutes);
#      each worker exits after a minute (-t 60) and systemd starts a fresh one, and
#      RuntimeMaxSec=1d restarts it daily in any case (Nextcloud advises regular restarts);
#   4. show the registered webhooks.
# Webhooks themselves are registered with `davpush nextcloud register-webhooks` (OCS API):
# occ has no command to add them.
#
# Safe to run again: every step checks first. --dry-run prints the commands and runs nothing
# (not even read-only occ commands).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: occ-setup.sh --davpush-url URL [options]

  --davpush-url URL   davpush's base URL as Nextcloud will call it (e.g. http://127.0.0.1:8000)
  --occ CMD           how to run occ (default: sudo -u WEB_USER php NEXTCLOUD_DIR/occ)
  --workers N         background-job workers for webhooks, 2-4 (default 2)
  --web-user USER     the user PHP runs as (default www-data)
  --nextcloud-dir DIR Nextcloud's directory (default /var/www/nextcloud)
  --php PATH          PHP binary used by the worker units (default /usr/bin/php)
  --stop-after SEC    each worker exits after SEC seconds and systemd starts a fresh one
                      (default 60; 0 leaves out -t for Nextcloud versions without it)
  --no-systemd        skip the worker units (containers, AIO: run the worker your own way)
  --unit-dir DIR      where units go (default /etc/systemd/system)
  --systemctl CMD     systemctl command (default systemctl)
  --dry-run           print every command, run nothing
  -h, --help          this help
EOF
}

die() { echo "occ-setup: $*" >&2; exit 2; }

OCC_CMD=""
DAVPUSH_URL=""
WORKERS=2
WEB_USER="www-data"
NC_DIR="/var/www/nextcloud"
PHP_BIN="/usr/bin/php"
STOP_AFTER=60
SYSTEMD=1
UNIT_DIR="/etc/systemd/system"
SYSTEMCTL_CMD="systemctl"
DRY_RUN=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --occ) [[ $# -ge 2 ]] || die "--occ needs a value"; OCC_CMD="$2"; shift 2 ;;
        --davpush-url) [[ $# -ge 2 ]] || die "--davpush-url needs a value"; DAVPUSH_URL="$2"; shift 2 ;;
        --workers) [[ $# -ge 2 ]] || die "--workers needs a value"; WORKERS="$2"; shift 2 ;;
        --web-user) [[ $# -ge 2 ]] || die "--web-user needs a value"; WEB_USER="$2"; shift 2 ;;
        --nextcloud-dir) [[ $# -ge 2 ]] || die "--nextcloud-dir needs a value"; NC_DIR="$2"; shift 2 ;;
        --php) [[ $# -ge 2 ]] || die "--php needs a value"; PHP_BIN="$2"; shift 2 ;;
        --stop-after) [[ $# -ge 2 ]] || die "--stop-after needs a value"; STOP_AFTER="$2"; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --unit-dir) [[ $# -ge 2 ]] || die "--unit-dir needs a value"; UNIT_DIR="$2"; shift 2 ;;
        --systemctl) [[ $# -ge 2 ]] || die "--systemctl needs a value"; SYSTEMCTL_CMD="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ -n "$DAVPUSH_URL" ]] || { usage >&2; die "--davpush-url is required"; }
[[ "$WORKERS" =~ ^[2-4]$ ]] || die "--workers must be 2, 3 or 4"
[[ "$DAVPUSH_URL" =~ ^https?://[^/]+ ]] || die "--davpush-url must be an http(s) URL"
[[ "$STOP_AFTER" =~ ^[0-9]+$ ]] || die "--stop-after must be a number of seconds"
[[ -n "$OCC_CMD" ]] || OCC_CMD="sudo -u $WEB_USER php $NC_DIR/occ"
read -r -a OCC <<<"$OCC_CMD"
read -r -a SYSTEMCTL <<<"$SYSTEMCTL_CMD"

WORKER_JOB='OCA\WebhookListeners\BackgroundJobs\WebhookCall'
WORKER_ARGS="-v"
if [[ "$STOP_AFTER" -gt 0 ]]; then WORKER_ARGS="-v -t $STOP_AFTER"; fi
UNIT_NAME="nextcloud-webhook-worker@.service"

# Print a command (shell-quoted) and run it, unless this is a dry run.
run() {
    local quoted
    printf -v quoted '%q ' "$@"
    echo "+ ${quoted% }"
    if [[ $DRY_RUN -eq 0 ]]; then
        "$@"
    fi
}
note() { echo "== $*"; }

# --- 1. webhook_listeners ----------------------------------------------------------------
note "webhook_listeners app"
app_enabled=0
if [[ $DRY_RUN -eq 0 ]]; then
    # `occ app:list` prints "Enabled:" then "  - app: version" lines, then "Disabled:".
    if "${OCC[@]}" app:list --no-warnings 2>/dev/null \
        | awk '/^Enabled:/{on=1; next} /^[^ ]/{on=0} on' | grep -Eq '^ +- webhook_listeners(:|$)'; then
        app_enabled=1
    fi
fi
if [[ $app_enabled -eq 1 ]]; then
    echo "already enabled"
else
    run "${OCC[@]}" app:enable webhook_listeners
fi

# --- 2. local/private receiver -----------------------------------------------------------
note "can Nextcloud reach $DAVPUSH_URL?"
host="${DAVPUSH_URL#*://}"
host="${host%%/*}"
host="${host##*@}"
if [[ "$host" == \[* ]]; then host="${host#[}"; host="${host%%]*}"; else host="${host%%:*}"; fi

is_local_ip() {
    local ip="${1,,}"
    case "$ip" in
        127.*|10.*|192.168.*|169.254.*|0.*) return 0 ;;
        172.1[6-9].*|172.2[0-9].*|172.3[01].*) return 0 ;;
        100.6[4-9].*|100.[7-9][0-9].*|100.1[01][0-9].*|100.12[0-7].*) return 0 ;;  # 100.64/10
        ::1|::ffff:127.*|::ffff:10.*|::ffff:192.168.*|fc*|fd*|fe80:*) return 0 ;;
    esac
    return 1
}

addresses=()
if [[ "$host" == "localhost" || "$host" == *.localhost ]]; then
    addresses=(127.0.0.1)
elif [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then
    addresses=("$host")
elif command -v getent >/dev/null 2>&1; then
    mapfile -t addresses < <(getent ahosts "$host" 2>/dev/null | awk '{print $1}' | sort -u)
fi
local_receiver=0
for address in "${addresses[@]}"; do
    if is_local_ip "$address"; then local_receiver=1; fi
done
if [[ ${#addresses[@]} -eq 0 ]]; then
    echo "warning: could not resolve $host; if it is a private address, run:" >&2
    echo "  ${OCC_CMD} config:system:set allow_local_remote_servers --value=true --type=boolean" >&2
elif [[ $local_receiver -eq 1 ]]; then
    current=""
    if [[ $DRY_RUN -eq 0 ]]; then
        current="$("${OCC[@]}" config:system:get allow_local_remote_servers 2>/dev/null || true)"
    fi
    if [[ "$current" == "true" || "$current" == "1" ]]; then
        echo "allow_local_remote_servers is already true"
    else
        echo "$host is a local/private address: Nextcloud refuses those unless allowed"
        run "${OCC[@]}" config:system:set allow_local_remote_servers --value=true --type=boolean
    fi
else
    echo "$host is public (${addresses[*]}); nothing to allow"
fi

# --- 3. background-job workers -----------------------------------------------------------
if [[ $SYSTEMD -eq 1 ]]; then
    note "webhook workers: $WORKERS x $UNIT_NAME"
    # systemd interprets C escapes in ExecStart, so the job class gets doubled backslashes.
    unit_text="$(cat <<EOF
# Installed by davpush nextcloud_setup/occ-setup.sh.
# Runs Nextcloud's webhook calls as soon as they are queued (about 1 s) instead of waiting
# for cron (up to 5 min). Instances: nextcloud-webhook-worker@1 ... @N.
[Unit]
Description=Nextcloud webhook worker %i
After=network-online.target
Wants=network-online.target

[Service]
User=$WEB_USER
ExecStart=$PHP_BIN $NC_DIR/occ background-job:worker $WORKER_ARGS "${WORKER_JOB//\\/\\\\}"
# Nextcloud advises restarting workers regularly (memory leaks). "-t N" makes the worker
# exit after N seconds, once its current job is done, and Restart=always starts a fresh one.
# RuntimeMaxSec=1d is the daily safety net (and the only restart without -t); it may cut a
# running webhook call short. (Alternative: a daily timer running
# systemctl restart 'nextcloud-webhook-worker@*'.)
Restart=always
RestartSec=1
RuntimeMaxSec=1d
Nice=5

[Install]
WantedBy=multi-user.target
EOF
)"
    unit_path="$UNIT_DIR/$UNIT_NAME"
    if [[ $DRY_RUN -eq 0 && -f "$unit_path" ]] && [[ "$(cat "$unit_path")" == "$unit_text" ]]; then
        echo "$unit_path is up to date"
    else
        echo "+ write $unit_path:"
        while IFS= read -r line; do echo "    $line"; done <<<"$unit_text"
        if [[ $DRY_RUN -eq 0 ]]; then
            mkdir -p "$UNIT_DIR"
            printf '%s\n' "$unit_text" >"$unit_path.tmp"
            mv "$unit_path.tmp" "$unit_path"
        fi
        run "${SYSTEMCTL[@]}" daemon-reload
    fi
    instances=()
    for ((i = 1; i <= WORKERS; i++)); do instances+=("nextcloud-webhook-worker@$i.service"); done
    run "${SYSTEMCTL[@]}" enable --now "${instances[@]}"
    # Fewer workers than last time: stop the extra ones.
    if [[ $DRY_RUN -eq 0 ]]; then
        for ((i = WORKERS + 1; i <= 8; i++)); do
            extra="nextcloud-webhook-worker@$i.service"
            if "${SYSTEMCTL[@]}" is-enabled --quiet "$extra" 2>/dev/null; then
                run "${SYSTEMCTL[@]}" disable --now "$extra"
            fi
        done
    fi
else
    note "webhook workers: skipped (--no-systemd)"
    echo "run $WORKERS loops of: ${OCC_CMD} background-job:worker $WORKER_ARGS '$WORKER_JOB'"
fi

# --- 4. verify ---------------------------------------------------------------------------
note "registered webhooks"
if [[ $DRY_RUN -eq 0 ]]; then
    background_mode="$("${OCC[@]}" config:app:get core backgroundjobs_mode 2>/dev/null || true)"
    if [[ -n "$background_mode" && "$background_mode" != "cron" ]]; then
        echo "note: background jobs run in '$background_mode' mode; 'cron' with a system cron is recommended"
    fi
    "${OCC[@]}" webhook_listeners:list --output=json_pretty || true
else
    printf -v quoted '%q ' "${OCC[@]}" webhook_listeners:list --output=json_pretty
    echo "+ ${quoted% }"
fi

cat <<EOF

Next: register the webhooks through the OCS API (occ has no command for it), e.g.
  NEXTCLOUD_APP_PASSWORD=... davpush nextcloud register-webhooks \\
      --nextcloud-url https://cloud.example.com --user admin --davpush-url $DAVPUSH_URL
A new webhook can take up to 5 minutes to fire (Nextcloud caches its webhook list).
EOF
if [[ $DRY_RUN -eq 1 ]]; then
    echo "(dry run: nothing was changed)"
fi
