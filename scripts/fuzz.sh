#!/usr/bin/env bash
# Fuzzes every decoder of a node (decision 018) on the stable toolchain: each target runs for
# MINUTES (fractions allowed, default 1) from its seeds, and the table shows per target the
# inputs tried, inputs per second, inputs accepted, corpus size and findings; each finding is
# printed with its input. Exits non-zero if anything was found.
#
# Usage: scripts/fuzz.sh [MINUTES] [--seed S] [--target NAME]
#   PROFILE=dev scripts/fuzz.sh 0.5   # skips the release build (slower inputs, same checks)
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-1}"
shift || true
profile="${PROFILE:-release}"
cargo build --profile "$profile" -p troupe-fuzz
dir="${CARGO_TARGET_DIR:-target}/$([[ "$profile" == dev ]] && echo debug || echo "$profile")"
exec "$dir/troupe-fuzz" --minutes "$minutes" "$@"
