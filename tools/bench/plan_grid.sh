#!/usr/bin/env bash
# How long `runner plan` takes to expand and check one-key grids of 500, 2,000 and 10,000 trials (two counter
# stages of the test plugins, the first reading the grid value), with peak memory. Issue 16 found expansion
# quadratic (yaml-cpp's node pools copied into every trial: 2,000 trials in 61 s); core/spec.h, YamlPool.
#
#   tools/bench/plan_grid.sh [build-dir]        # after tools/build.sh
set -euo pipefail
b=$(realpath "${1:-build}")
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
for n in 500 2000 10000; do
  python3 - "$n" > "$w/g$n.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("name: g\ndefaults: {a: 1, b: x, c: {d: 2, e: [1, 2, 3]}}")
print("grid: {p: [" + ", ".join(str(i) for i in range(n)) + "]}")
print("stages:\n  - {name: count, algorithm: counter, steps: \"${p}\", start: 1.0}")
print("  - {name: count2, algorithm: counter, steps: 2, decay: 0.5}")
PY
  /usr/bin/time -f "$n trials: %e s, peak %M KB" "$b/bin/runner" --results "$w/r.db" \
    --plugin-path "$b/tests/test_plugins/good" plan "$w/g$n.yaml" > /dev/null
done
