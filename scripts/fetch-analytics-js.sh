#!/usr/bin/env bash
# Segment's browser SDK (analytics-next), for the browser test that posts to /api/segment/
# from another origin (tests/e2e/test_segment_browser.py): the npm package at a pinned
# version, checked against the registry's integrity hash, unpacked under .cache/.
set -euo pipefail
VERSION=1.84.3
INTEGRITY="sha512-5l7cPBzScxhfJ0zdcKQI4daDvMIWWUk7hClT1xGRelnHUltIEoQ9w8+ZpFPoWJMpX8D7IA1nVAfJbpiKi3XaKw=="
DEST=".cache/analytics-next-$VERSION"
[ -f "$DEST/dist/umd/index.js" ] && exit 0
command -v npm >/dev/null || { echo "npm is needed to fetch @segment/analytics-next (Node.js's package manager)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@segment/analytics-next@$VERSION" >/dev/null)
tarball="$work/segment-analytics-next-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "@segment/analytics-next $VERSION: integrity $actual, expected $INTEGRITY" >&2
  exit 1
fi
mkdir -p "$DEST"
tar -xzf "$tarball" -C "$DEST" --strip-components=1
