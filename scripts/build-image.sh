#!/usr/bin/env bash
# Builds the Troupe node image FROM scratch, with no network access: the release binary, the
# shared libraries it links (as ldd lists them) and the default cluster.toml.
# Usage: scripts/build-image.sh            (image name from TROUPE_IMAGE, default troupe:local)
set -euo pipefail
cd "$(dirname "$0")/.."
image="${TROUPE_IMAGE:-troupe:local}"

cargo build --release --locked -p troupe-node --bin troupe
# Where cargo put it: under $CARGO_TARGET_DIR when set, as the other scripts read it.
binary="${CARGO_TARGET_DIR:-target}/release/troupe"
stage=target/image
rm -rf "$stage"
mkdir -p "$stage/rootfs/etc/troupe" "$stage/rootfs/data" "$stage/rootfs/tmp"
cp "$binary" "$stage/rootfs/troupe"
strip "$stage/rootfs/troupe" 2>/dev/null || echo "note: strip not found, image keeps debug line tables"
# Every shared library the binary needs, at the same path inside the image (dynamic loader included).
ldd "$binary" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
  mkdir -p "$stage/rootfs$(dirname "$lib")"
  cp -L "$lib" "$stage/rootfs$lib"
done
cp cluster.toml "$stage/rootfs/etc/troupe/cluster.toml"
cp Dockerfile "$stage/Dockerfile"
docker build --quiet -t "$image" "$stage"
echo "built image $image ($(du -sh "$stage/rootfs" | cut -f1) on disk)"
