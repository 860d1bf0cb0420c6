#!/usr/bin/env bash
# Build the release before the log store (issue #12) from git, for the upgrade test
# (test/exe/upgrade.test.ts reads PODCIDR_OLD_BIN):
#   bash scripts/build-pre-log.sh [OUT]     (default /tmp/podcidr-ipam-pre-log)
# It needs the repository's history (not a shallow clone) and this checkout's node_modules.
set -euo pipefail
out="${1:-/tmp/podcidr-ipam-pre-log}"
# The last commit before the log store (the merge of main into the logstore branch, before its design note).
commit=094e5beacf9982c4c4571ac916716f5b8aa3ae57
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null || {
  echo "build-pre-log: commit $commit is not in this clone (a shallow one?): git fetch --unshallow" >&2
  exit 1
}
git -C "$root" archive "$commit" | tar -x -C "$tmp"
ln -s "$root/node_modules" "$tmp/node_modules"
node "$tmp/scripts/build.mjs" --quiet --out "$out"
echo "built $out from $commit"
