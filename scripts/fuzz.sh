#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time (FUZZTIME, default 5s each).
#
# Go before 1.27 has a race in its fuzzing coordinator (https://go.dev/issue/75804): when
# -fuzztime expires, a worker's shutdown can be reported as a failure, "context deadline
# exceeded", although nothing failed. A real failure always writes its input to
# testdata/fuzz/<target>/. So a run that fails with that message and writes no input is run
# once more; any other failure, or the same one twice, fails.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
count=0

# inputs lists the stored failing inputs of a target.
inputs() { ls "$1/testdata/fuzz/$2" 2>/dev/null || true; }

# fuzz runs one target and reports whether it passed; its output goes to stdout and to $log.
fuzz() {
	go test -run='^$' -fuzz="^$2\$" -fuzztime="$fuzztime" "$1" 2>&1 | tee "$log"
	return "${PIPESTATUS[0]}"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz: $pkg $target ($fuzztime)"
		before=$(inputs "$pkg" "$target")
		if ! fuzz "$pkg" "$target"; then
			if grep -q 'context deadline exceeded' "$log" && [ "$(inputs "$pkg" "$target")" = "$before" ]; then
				echo "fuzz: $target stopped with the fuzzing coordinator's deadline race (go.dev/issue/75804) and wrote no failing input; running it again"
				fuzz "$pkg" "$target"
			else
				exit 1
			fi
		fi
		count=$((count + 1))
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sed 's|^\./||' | sort)
echo "fuzz: $count targets run"
