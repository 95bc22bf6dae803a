#!/bin/sh
# Create the virtualenv VENV and install davpush into it from the wheels tools/build-wheels.sh
# built, and nothing else (no package index): exactly the pinned versions.
# The container's final stage and the packaging tests both run this.
#   tools/install-wheels.sh WHEEL_DIR VENV        (PYTHON=python3 by default)
set -eu
wheels=${1:?usage: tools/install-wheels.sh WHEEL_DIR VENV}
venv=${2:?usage: tools/install-wheels.sh WHEEL_DIR VENV}
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-index --find-links "$wheels" davpush
