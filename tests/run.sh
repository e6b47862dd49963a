#!/usr/bin/env bash
# The one command that sets up a fresh machine and runs every test:
#   1. Debian packages the tests need (rabbitmq-server, ruby-actioncable, puma, redis-server,
#      dpkg-dev; node/npm if missing), via apt-get (sudo only when not root);
#   2. `npm ci` in tests/peers (skipped when node_modules already matches package-lock.json);
#   3. cargo-deb (`cargo install cargo-deb --locked`) when `cargo deb` is missing: tests/package.rs
#      builds the Debian package (a release build, shared with `cargo build --release`);
#   4. `cargo test --all-targets "$@"`, then one closing line `summary: N passed, N failed, N skipped`.
# CI runs it through .ci/run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS="$ROOT/tests/peers"
cd "$ROOT"
log() { echo "run.sh: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

# --- Debian packages ---------------------------------------------------------------------------
missing=()
dpkg -s rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
# Rails Action Cable 6.1 (pulls in ruby) and puma: tests/peers/actioncable/start.sh.
dpkg -s ruby-actioncable >/dev/null 2>&1 || missing+=(ruby-actioncable)
dpkg -s puma >/dev/null 2>&1 || missing+=(puma)
# dpkg-shlibdeps: cargo-deb computes the package's Depends with it (tests/package.rs).
dpkg -s dpkg-dev >/dev/null 2>&1 || missing+=(dpkg-dev)
# Redis for the hub across instances (tests/hub_redis.rs starts its own servers).
dpkg -s redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The binary's default allocator, jemalloc, is built from C (Cargo.toml's `jemalloc` feature).
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run (e.g. a background install) may hold the lock: wait for it.
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi
# The packages start no servers: tests run their own (tests/peers/rabbitmq/start.sh,
# tests/peers/actioncable/start.sh).

# --- npm ---------------------------------------------------------------------------------------
# Same stamp as tests/common/mod.rs ensure_npm(): the lock file's SHA-256 inside node_modules.
STAMP="$PEERS/node_modules/.switchboard-lock-sha256"
HASH=$(sha256sum "$PEERS/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$HASH" ]; then
  log "npm ci in tests/peers"
  (cd "$PEERS" && npm ci --no-audit --no-fund)
  echo "$HASH" > "$STAMP"
fi

# --- cargo-deb -----------------------------------------------------------------------------------
# tests/package.rs runs `cargo deb`; dpkg-deb (package dpkg) reads the result. The version is
# pinned so a clean machine builds the package as this one did.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
  log "cargo install cargo-deb --locked --version $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
# systemd-analyze (package systemd) is optional: without it tests/package.rs skips the
# unit's exposure check and says so.

# --- tests -------------------------------------------------------------------------------------
# A CI run builds once: incremental state would only take disk (1.5 GB of the test build).
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
log "node $(node --version), $(cargo --version)"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
set +e
cargo test --all-targets "$@" 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (benches print their own last lines).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$OUT"
exit "$rc"
