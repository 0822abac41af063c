#!/usr/bin/env bash
# Build (once) and locate the upstream kube-apiserver and etcd binaries used by
# the end-to-end tests, in the layout of controller-runtime's envtest /
# setup-envtest (one folder holding `kube-apiserver` and `etcd`).
#
#   export KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)
#
# stdout: the absolute path of the assets folder, and nothing else.
# stderr: progress and the versions of both binaries.
#
# - If KUBEBUILDER_ASSETS already names a folder holding both binaries, that
#   folder is printed and nothing is built.
# - Otherwise the binaries are built from the Go module in tests/kube (pins in
#   its go.mod/go.sum) into
#     ${DINGBIND_KUBE_ASSETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dingbind/kube-assets}/<hash>
#   where <hash> covers go.mod, go.sum and the build recipe below, and are
#   reused as long as that folder exists.
#
# Environment knobs: GO (go binary), GOFLAGS/GOCACHE/GOMODCACHE/GOPROXY as
# usual for go, DINGBIND_KUBE_ASSETS_GO_P (go build -p, default: go's own).
set -euo pipefail

log() { echo "kube-assets: $*" >&2; }
die() { echo "kube-assets: error: $*" >&2; exit 1; }

# Bump when the build commands/flags below change, so old caches are not reused.
RECIPE="v1 CGO_ENABLED=0 -trimpath -ldflags=-s,-w,version-X"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD_DIR="$ROOT/tests/kube"
[[ -f $MOD_DIR/go.mod && -f $MOD_DIR/go.sum ]] \
  || die "$MOD_DIR/go.mod or go.sum is missing (regenerate with scripts/kube-assets-bump.sh)"

log_versions() {
  local dir=$1
  log "kube-apiserver: $("$dir/kube-apiserver" --version 2>&1 | head -n1)"
  log "etcd: $("$dir/etcd" --version 2>&1 | tr '\n' ' ' | sed 's/ *$//')"
}

has_assets() { [[ -x $1/kube-apiserver && -x $1/etcd && -f $1/kube-apiserver && -f $1/etcd ]]; }

# 1. An existing setup-envtest style folder wins.
if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  if has_assets "$KUBEBUILDER_ASSETS"; then
    dir=$(cd "$KUBEBUILDER_ASSETS" && pwd)
    log "using KUBEBUILDER_ASSETS=$dir (nothing built)"
    log_versions "$dir"
    printf '%s\n' "$dir"
    exit 0
  fi
  log "warning: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS does not hold executable kube-apiserver and etcd; ignoring it"
fi

# 2. The cache folder for the current pins.
hash_cmd=sha256sum
command -v "$hash_cmd" >/dev/null 2>&1 || hash_cmd="shasum -a 256"
HASH=$( { cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum"; echo "$RECIPE"; } | $hash_cmd | cut -c1-16)
CACHE_ROOT=${DINGBIND_KUBE_ASSETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dingbind/kube-assets}
mkdir -p "$CACHE_ROOT" || die "cannot create cache folder $CACHE_ROOT"
CACHE_ROOT=$(cd "$CACHE_ROOT" && pwd)
DEST="$CACHE_ROOT/$HASH"

if has_assets "$DEST"; then
  log "reusing cached binaries in $DEST"
  log_versions "$DEST"
  printf '%s\n' "$DEST"
  exit 0
fi

# 3. Build. Serialise concurrent callers on a lock when flock is available.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_ROOT/.lock"
  if ! flock -n 9; then
    log "another build holds $CACHE_ROOT/.lock; waiting for it"
    flock 9
  fi
  if has_assets "$DEST"; then   # someone else built it meanwhile
    log "reusing binaries built concurrently in $DEST"
    log_versions "$DEST"
    printf '%s\n' "$DEST"
    exit 0
  fi
fi

GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "go not found in PATH nor at /usr/local/go/bin/go (set GO=/path/to/go); Go >= $(sed -n 's/^go //p' "$MOD_DIR/go.mod") is needed"
  fi
fi

cd "$MOD_DIR"
K8S_VERSION=$("$GO" list -m -f '{{.Version}}' k8s.io/kubernetes) \
  || die "cannot resolve k8s.io/kubernetes from $MOD_DIR/go.mod"
ETCD_VERSION=$("$GO" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) \
  || die "cannot resolve go.etcd.io/etcd/server/v3 from $MOD_DIR/go.mod"
K8S_DATE=$("$GO" list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
[[ $K8S_VERSION =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected k8s.io/kubernetes version $K8S_VERSION"
K8S_MAJOR=${BASH_REMATCH[1]} K8S_MINOR=${BASH_REMATCH[2]}

# Same version variables as kubernetes' hack/lib/version.sh, so that
# `kube-apiserver --version` and GET /version report the real release.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
  ldflags+=" -X $pkg.gitTreeState=clean${K8S_DATE:+ -X $pkg.buildDate=$K8S_DATE}"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"

build_flags=(-trimpath)
[[ -n ${DINGBIND_KUBE_ASSETS_GO_P:-} ]] && build_flags+=(-p "$DINGBIND_KUBE_ASSETS_GO_P")

TMP=$(mktemp -d "$CACHE_ROOT/.build-$HASH.XXXXXX")
chmod 0755 "$TMP"
trap 'rm -rf "$TMP"' EXIT

log "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION with $("$GO" env GOVERSION) into $DEST"
log "(cold: ~0.6 GB of modules, ~3 GB of GOCACHE, ~10 min on 2 busy cores; later runs reuse the cache)"

start=$SECONDS
log "go mod download"
"$GO" mod download || die "go mod download failed in $MOD_DIR (is the Go module proxy reachable?)"
log "  done in $((SECONDS - start))s"

t=$SECONDS
log "go build etcd ($ETCD_VERSION)"
CGO_ENABLED=0 "$GO" build "${build_flags[@]}" -ldflags "$etcd_ldflags" -o "$TMP/etcd" go.etcd.io/etcd/server/v3 \
  || die "building etcd failed"
log "  done in $((SECONDS - t))s"

t=$SECONDS
log "go build kube-apiserver ($K8S_VERSION)"
CGO_ENABLED=0 "$GO" build "${build_flags[@]}" -ldflags "$ldflags" -o "$TMP/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver \
  || die "building kube-apiserver failed"
log "  done in $((SECONDS - t))s"

has_assets "$TMP" || die "the build did not produce both binaries in $TMP"
"$TMP/kube-apiserver" --version >/dev/null 2>&1 || die "the built kube-apiserver does not run"
"$TMP/etcd" --version >/dev/null 2>&1 || die "the built etcd does not run"
printf 'k8s.io/kubernetes %s\ngo.etcd.io/etcd/server/v3 %s\n%s\n' \
  "$K8S_VERSION" "$ETCD_VERSION" "$("$GO" env GOVERSION)" > "$TMP/VERSIONS"

# Atomic publish: rename the finished folder into place.
rm -rf "$DEST"
mv -T "$TMP" "$DEST" 2>/dev/null || { has_assets "$DEST" || die "cannot move $TMP to $DEST"; }
trap - EXIT
rm -rf "$TMP"

log "built in $((SECONDS - start))s: $DEST"
log_versions "$DEST"
printf '%s\n' "$DEST"
