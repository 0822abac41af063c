#!/usr/bin/env bash
# Build (once) and locate the kstatus reader of tests/kstatus.rs: a small Go
# program (tests/kstatus) that judges objects with sigs.k8s.io/cli-utils'
# kstatus, as Flux and kpt do.
#
#   export DINGBIND_KSTATUS=$(scripts/kstatus.sh)
#
# stdout: the absolute path of the binary, and nothing else; stderr: progress.
# Built into ${XDG_CACHE_HOME:-$HOME/.cache}/dingbind/kstatus/<hash>, where
# <hash> covers the module's files, and reused while that file exists.
set -euo pipefail

log() { echo "kstatus: $*" >&2; }
die() { echo "kstatus: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD_DIR="$ROOT/tests/kstatus"
GO=${GO:-go}
command -v "$GO" >/dev/null || die "no Go toolchain ('$GO'): install Go to build the kstatus reader"

hash=$(cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum" "$MOD_DIR/main.go" | sha256sum | cut -c1-16)
out="${XDG_CACHE_HOME:-$HOME/.cache}/dingbind/kstatus/$hash/kstatus"
if [[ ! -x $out ]]; then
  log "building the kstatus reader (sigs.k8s.io/cli-utils) into $out"
  mkdir -p "$(dirname "$out")"
  (cd "$MOD_DIR" && CGO_ENABLED=0 "$GO" build -mod=readonly -trimpath -o "$out.tmp" .) \
    || die "go build in tests/kstatus failed"
  mv "$out.tmp" "$out"
fi
echo "$out"
