#!/usr/bin/env bash
# test.sh - the README's test command: installs what the tests need,
# builds Paramount twice (optimised, and with ASan+UBSan), runs the whole
# suite on the first and the unit tests on the second, then runs each
# libFuzzer target for a bounded time.  Non-zero exit on any failure.
#   FUZZ_SECONDS=60   time per fuzz target (0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc)

bash scripts/deps.sh --test

echo "== build (RelWithDebInfo) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPM_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

# On a CI machine, node cgroups left by an earlier aborted run hold CPU
# quota that the local provider would count against new nodes.  The
# provider now collects those itself (docs/cli.md, `up`), but waits 2
# minutes before it removes cgroups that a build from before its run
# registry left; this belt-and-braces removes every empty one at once
# (rmdir refuses any that still has a process).
if [[ "${CI:-}" == true ]]; then
  for root in /sys/fs/cgroup/*/paramount /sys/fs/cgroup/*/*/paramount; do
    [[ -d "$root" ]] || continue
    find "$root" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
fi

echo "== tests =="
(cd build && ctest --output-on-failure -j1)

echo "== unit tests under ASan+UBSan =="
# -O1, as the sanitizers' own docs advise: at -O0 the trainer's tests
# run their float loops ~30x slower than optimised, for no extra finding.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPM_SANITIZE=ON \
  "-DCMAKE_C_FLAGS_DEBUG=-g -O1" >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -L unit -j1)

fuzz_s=${FUZZ_SECONDS:-60}
if [[ "$fuzz_s" != 0 && -f fuzz/CMakeLists.txt ]]; then
  echo "== fuzzing (${fuzz_s}s per target) =="
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPM_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzzers
  shopt -s nullglob
  for f in build-fuzz/fuzz_*; do
    [[ -x "$f" ]] || continue
    name=$(basename "$f")
    corpus="$top/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [[ -d "$corpus" ]] && cp -r "$corpus/." "$work/"
    echo "-- $name"
    "$f" -max_total_time="$fuzz_s" -print_final_stats=1 "$work" 2>&1 | tail -n 15
    rm -rf "$work"
  done
fi
echo "== all tests passed =="
