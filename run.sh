#!/usr/bin/env bash
# The two commands a newcomer needs (see README):
#   ./run.sh start   web + worker (+ scheduler) + a private Redis when REDIS_URL is unset
#   ./run.sh test    the test suite (real Redis; Radicale is started by the tests)
#   ./run.sh lint    ruff and mypy, as CI runs them (settings in pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")"

ensure_venv() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing davpush and its dependencies into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
  fi
}

ensure_test_redis() {
  local url="${TEST_REDIS_URL:-redis://127.0.0.1:6379/14}"
  if .venv/bin/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$url" 2>/dev/null; then
    return
  fi
  if [ -n "${TEST_REDIS_URL:-}" ]; then
    echo "TEST_REDIS_URL=$TEST_REDIS_URL is not reachable" >&2
    exit 3
  fi
  command -v redis-server >/dev/null || { echo "no Redis on 127.0.0.1:6379 and redis-server is not installed" >&2; exit 3; }
  echo "starting redis-server on 127.0.0.1:6379 for the tests" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do
    .venv/bin/python -c "import redis; redis.Redis(port=6379).ping()" 2>/dev/null && return
    sleep 0.1
  done
  echo "redis-server did not come up" >&2
  exit 3
}

case "${1:-}" in
  start)
    ensure_venv
    if [ ! -f .env ]; then
      .venv/bin/davpush init --env-file .env --vapid-file var/vapid_private.pem
    fi
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
    exec .venv/bin/davpush up
    ;;
  test)
    shift
    ensure_venv
    ensure_test_redis
    exec .venv/bin/python -m pytest "$@"
    ;;
  lint)
    ensure_venv
    .venv/bin/ruff check .
    .venv/bin/mypy
    ;;
  *)
    echo "usage: ./run.sh start | ./run.sh test [pytest options] | ./run.sh lint" >&2
    exit 2
    ;;
esac
