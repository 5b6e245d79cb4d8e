#!/usr/bin/env bash
# mxcp peer comparison, on demand (not in CI): times mxcp 0.12.3's
# SqliteTokenStore (Python) and tokenstore (the bare SQLite backend and the
# cache over the write buffer over SQLite) on the same sessions, one caller,
# one call at a time, and prints microseconds per call with ratios.
#
# Usage: tests/peers/mxcp_peer.sh [SESSIONS]     (default 2000)
# Needs python3 (3.10+) with venv and network access to PyPI. Makes a throwaway
# virtualenv in a temporary directory (set MXCP_VENV=DIR to reuse one that has
# mxcp==0.12.3 installed). Builds the Rust side into $CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
n="${1:-2000}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
venv="${MXCP_VENV:-}"
if [ -z "$venv" ]; then
    venv="$work/venv"
    python3 -m venv "$venv"
    # A plain `pip install mxcp==0.12.3` fails to resolve; this dbt-core pin
    # installs from PyPI alone.
    "$venv/bin/pip" install -q mxcp==0.12.3 "dbt-core<1.11"
fi

echo "tokenstore (cargo run --release -p tokenstore --example peer_ops -- $n) ..." >&2
(cd "$root" && cargo run -q --release -p tokenstore --example peer_ops -- "$n") > "$work/rust.json"
echo "mxcp 0.12.3 ($n sessions) ..." >&2
(cd "$work" && "$venv/bin/python" "$here/mxcp_peer.py" "$n") > "$work/mxcp.json"

python3 - "$work/rust.json" "$work/mxcp.json" <<'PY'
import json, sys
rust = json.load(open(sys.argv[1]))
py = json.load(open(sys.argv[2]))
n = rust["sessions"]
print(f"{n} sessions, one caller, one call at a time; Fernet on; synchronous FULL")
print("µs per call (ratio = mxcp as shipped / ours; higher is better for us)")
rows = [
    ("store_session", "mxcp (rollback journal)", py["mxcp"]["store_session_us"]),
    ("store_session", "mxcp on a WAL file", py["mxcp_wal"]["store_session_us"]),
    ("store_session", "tokenstore sqlite (WAL)", rust["sqlite"]["store_session_us"]),
    ("store_session", "tokenstore cache+buffer (incl. flush)", rust["stack"]["store_session_us"]),
    ("load_session_by_token", "mxcp (rollback journal)", py["mxcp"]["load_session_by_token_us"]),
    ("load_session_by_token", "mxcp on a WAL file", py["mxcp_wal"]["load_session_by_token_us"]),
    ("load_session_by_token", "tokenstore sqlite (WAL)", rust["sqlite"]["load_session_by_token_us"]),
    ("load_session_by_token", "tokenstore cache+buffer, cold", rust["stack"]["load_session_by_token_cold_us"]),
    ("load_session_by_token", "tokenstore cache+buffer, warm", rust["stack"]["load_session_by_token_warm_us"]),
]
base = {"store_session": py["mxcp"]["store_session_us"],
        "load_session_by_token": py["mxcp"]["load_session_by_token_us"]}
wal = {"store_session": py["mxcp_wal"]["store_session_us"],
       "load_session_by_token": py["mxcp_wal"]["load_session_by_token_us"]}
print(f"  {'op':<22} {'store':<38} {'µs/call':>10} {'vs mxcp':>9} {'vs mxcp WAL':>12}")
for op, label, us in rows:
    print(f"  {op:<22} {label:<38} {us:>10.2f} {base[op] / us:>8.1f}x {wal[op] / us:>11.1f}x")
PY
