#!/usr/bin/env bash
# run.sh - the README's main command: installs what Paramount needs, builds
# it, and runs the seed's two tests on this machine's local mini-cloud with
# `paramount experiment seed` (docs/experiment.md).  Extra arguments go to
# the experiment: --out DIR, --images /path/to/img_align_celeba, --full, ...
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target paramount_cli paramount-esrgan >/dev/null

# Test 1 (3 heterogeneous nodes, Paramount moves the job to the ideal type)
# then Test 2 (3 nodes of that type from the start), and their comparison.
# About 10 minutes on a 2-core host; exit 0 only when both tests completed,
# Test 1 ended homogeneous and every node is terminated.
exec build/paramount experiment seed "$@"
