#!/usr/bin/env bash
# Syntax-check every PHP file of the companion app with `php -l` (skipped without php).
set -euo pipefail

if ! command -v php >/dev/null 2>&1; then
    echo "php not installed; skipped"
    exit 0
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
status=0
count=0
while IFS= read -r -d '' file; do
    count=$((count + 1))
    php -l "$file" || status=1
done < <(find "$here" -name '*.php' -type f -print0 | sort -z)
echo "checked $count PHP file(s)"
exit "$status"
