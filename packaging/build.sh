#!/bin/sh
# Builds the .deb and .rpm: release binary, man page and completions generated from
# the CLI definition, then cargo-deb and cargo-generate-rpm (cargo install cargo-deb
# cargo-generate-rpm). Output: target/debian/*.deb, target/generate-rpm/*.rpm.
set -eu
cd "$(dirname "$0")/.."
cargo build --profile dist --locked
./target/dist/crawler-agent generate target/assets
cargo deb --no-build --profile dist
cargo generate-rpm --profile dist
ls -l target/debian/*.deb target/generate-rpm/*.rpm
