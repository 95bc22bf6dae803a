#!/bin/sh
# Build davpush's wheel and a wheel of every pinned dependency (requirements.txt) into DIR.
# The container's build stage and the packaging tests both run this: one set of commands.
#   tools/build-wheels.sh DIR        (PYTHON=python3 by default)
set -eu
mkdir -p "${1:?usage: tools/build-wheels.sh WHEEL_DIR}"
wheels=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
# setuptools reuses build/ from an earlier build, which could carry since-deleted modules into the wheel.
rm -rf build
"${PYTHON:-python3}" -m pip wheel --disable-pip-version-check --wheel-dir "$wheels" --requirement requirements.txt
