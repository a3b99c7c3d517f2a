#!/usr/bin/env bash
# Copies the proto files our contract imports from the Go module cache into .proto-deps/
# (ignored by git). The Buf Schema Registry is not used: everything comes from pinned Go modules.
set -euo pipefail

PROTOVALIDATE_VERSION=${PROTOVALIDATE_VERSION:-v1.2.2}
GATEWAY_V1_VERSION=${GATEWAY_V1_VERSION:-v1.16.0}
out=${1:-.proto-deps}

moddir() {
	go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

pv=$(moddir "github.com/bufbuild/protovalidate@${PROTOVALIDATE_VERSION}")
gw=$(moddir "github.com/grpc-ecosystem/grpc-gateway@${GATEWAY_V1_VERSION}")
[ -n "$pv" ] && [ -n "$gw" ] || { echo "proto-deps: could not locate modules in the Go module cache" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/buf/validate" "$out/google/api"
cp "$pv/proto/protovalidate/buf/validate/validate.proto" "$out/buf/validate/"
cp "$gw/third_party/googleapis/google/api/annotations.proto" "$gw/third_party/googleapis/google/api/http.proto" "$out/google/api/"
chmod -R u+w "$out"
