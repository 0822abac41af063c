#!/usr/bin/env bash
# The test suite: `scripts/test.sh [cargo test args...]`.
# Starts what the tests need on loopback (a throwaway PostgreSQL when the
# server binaries are installed), runs `cargo test`, and stops it all again.
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup() { :; }
trap 'cleanup' EXIT

# One throwaway server per checkout, so that two checkouts never stop each other's.
mkdir -p target
export DINGBIND_PG_STATE="${DINGBIND_PG_STATE:-$PWD/target/postgres-test.state}"
if [[ -x scripts/postgres-test.sh && -z "${DINGBIND_TEST_POSTGRES_URL:-}" ]]; then
  eval "$(scripts/postgres-test.sh start)"
  cleanup() { scripts/postgres-test.sh stop || true; }
fi

# The real kube-apiserver and etcd for tests/kube_api.rs (built once into a
# cache on a fresh machine; the script logs both versions on stderr).
if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
  KUBEBUILDER_ASSETS="$(scripts/kube-assets.sh)"
  export KUBEBUILDER_ASSETS
fi

cargo test --locked "$@"
