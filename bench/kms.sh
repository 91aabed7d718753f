#!/bin/sh
# Key service benchmark: logged unwraps per second and p50/p99 latency with
# N threads (group commit), every release durable and returned with its
# inclusion proof.  Usage: sh bench/kms.sh [BUILD_DIR]   (default: build)
# KH_KMS_BENCH_SECONDS (default 3) and KH_KMS_BENCH_THREADS (one count only)
# tune it.  The scratch region lives in $TMPDIR (the disk being measured).
set -eu
BUILD=${1:-build}
BIN=$BUILD/tests/test_kms
[ -x "$BIN" ] || { echo "bench/kms.sh: $BIN not built (ninja -C $BUILD)" >&2; exit 1; }
echo "== key service: logged unwraps (every release durable, with its inclusion proof)"
echo "   $(nproc) CPUs; log on $(df -P "${TMPDIR:-/tmp}" | awk 'NR==2 {print $1}')"
KH_KMS_BENCH=1 KH_KMS_BENCH_SECONDS=${KH_KMS_BENCH_SECONDS:-3} "$BIN"
