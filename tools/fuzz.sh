#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ (one per parser of outside input), built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer into build-fuzz/ (only the torch-free libraries they call: MMR_FUZZ), then each run for
# a bounded time from its seed corpus (fuzz/corpus/<target>/, copied to build-fuzz/corpus/<target>/, where the
# inputs it finds go). A crash, sanitizer report, unexpected exception, timeout (-timeout) or running out of memory
# (-rss_limit_mb) is a finding: the script prints the input that caused it and its report, and exits 1.
#
#   tools/fuzz.sh [seconds-per-target] [target...]    # default 20 s, every target; targets run nproc at a time
#   build-fuzz/bin/fuzz_spec build-fuzz/findings/fuzz_spec-crash-...   # replay one input
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
build=build-fuzz

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMR_FUZZ=ON \
  > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# The dictionary of tokens libFuzzer splices into inputs, by what the target reads.
dictionary() {
  case "$1" in
    fuzz_spec) echo fuzz/dict/yaml.dict ;;
    fuzz_judge_replies | fuzz_reference_match) echo fuzz/dict/judge_replies.dict ;;
    fuzz_image_*) ;;
    fuzz_bench_mmbench) echo fuzz/dict/tsv.dict ;;
    *) echo fuzz/dict/json.dict ;;
  esac
}

# Runs one target; its exit status goes to logs/<target>.status.
run_one() {
  local t=$1 dict status=0
  dict=$(dictionary "$t")
  mkdir -p "$build/corpus/$t" "$build/findings" "$build/scratch/$t"
  # TMPDIR: the targets' scratch files (fuzz/fuzz.h), one folder per target, emptied here.
  rm -rf "${build:?}/scratch/$t"/*
  TMPDIR="$PWD/$build/scratch/$t" "$build/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$t-" ${dict:+-dict="$dict"} \
    "$build/corpus/$t" "fuzz/corpus/$t" > "$build/logs/$t.log" 2>&1 || status=$?
  echo "$status" > "$build/logs/$t.status"
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rm -rf "$build/logs" "$build/findings"
mkdir -p "$build/logs"
jobs_max=$(nproc)
for t in "${targets[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n; done
  run_one "$t" &
done
wait

failed=()
printf '%-28s %12s %8s  %s\n' target executions cov: result
for t in "${targets[@]}"; do
  status=$(cat "$build/logs/$t.status")
  log="$build/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [[ $status -eq 0 ]]; then
    printf '%-28s %12s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" ok
  else
    printf '%-28s %12s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "FINDING (exit $status)"
    failed+=("$t")
  fi
done

for t in "${failed[@]}"; do
  echo
  echo "=== $t: $build/logs/$t.log"
  # The report's head lines and our own frames; the whole report is in the log.
  grep -E "terminate called|what\(\)|ERROR|SUMMARY|runtime error| in mmr::|round trip|^\{" "$build/logs/$t.log" | head -20
  for f in "$build/findings/$t"-*; do [[ -e $f ]] && echo "input: $f ($(stat -c %s "$f") bytes)"; done
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets found a problem: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no finding"
