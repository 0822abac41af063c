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
# The suite asks for PostgreSQL: its tests FAIL (never skip) when the server is
# missing or unreachable (tests/support/postgres.rs).
export DINGBIND_TEST_REQUIRE_POSTGRES=1
if [[ -z "${DINGBIND_TEST_POSTGRES_URL:-}" ]]; then
  # Not `eval "$(... start)"`: a failing start would eval "" and carry on.
  cleanup() { scripts/postgres-test.sh stop || true; }
  if ! pg_env=$(scripts/postgres-test.sh start); then
    echo "test.sh: error: scripts/postgres-test.sh start failed; the PostgreSQL tests cannot run" >&2
    exit 1
  fi
  if [[ $pg_env != "export DINGBIND_TEST_POSTGRES_URL="?* ]]; then
    echo "test.sh: error: scripts/postgres-test.sh start printed no URL: '$pg_env'" >&2
    exit 1
  fi
  eval "$pg_env"
fi
[[ -n "${DINGBIND_TEST_POSTGRES_URL:-}" ]] || { echo "test.sh: error: DINGBIND_TEST_POSTGRES_URL is empty" >&2; exit 1; }

# The real kube-apiserver and etcd for tests/kube_api.rs (built once into a
# cache on a fresh machine; the script logs both versions on stderr).
if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
  KUBEBUILDER_ASSETS="$(scripts/kube-assets.sh)"
  export KUBEBUILDER_ASSETS
fi

# kstatus itself (sigs.k8s.io/cli-utils) for tests/kstatus.rs, built once.
if [[ -z "${DINGBIND_KSTATUS:-}" ]]; then
  DINGBIND_KSTATUS="$(scripts/kstatus.sh)"
  export DINGBIND_KSTATUS
fi

cargo test --locked "$@"
