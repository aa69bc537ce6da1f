#!/usr/bin/env bash
# Packs node_modules for a device run into .devnm/nm.tar.xz (git-ignored): without the packages only
# this machine uses (biome, typescript, @types, the openai client of the server tests), xz-compressed,
# because the working tree plus what a run carries must stay under 64 MiB (the tree is ~19 MiB and
# .device ~24 MiB; the plain copy is ~38 MiB, the archive ~7). On the device:
#   mkdir -p node_modules && tar -xJf .devnm/nm.tar.xz -C node_modules && source .device/prelude.sh && …
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r node_modules/. "$stage/"
rm -rf "$stage/@biomejs" "$stage/typescript" "$stage/@types" "$stage/openai" "$stage/.bin/openai"
rm -rf .devnm && mkdir .devnm
tar -C "$stage" -cJf .devnm/nm.tar.xz .
du -h .devnm/nm.tar.xz
