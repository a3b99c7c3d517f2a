#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time (FUZZTIME, default 5s each).
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
count=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz: $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
		count=$((count + 1))
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sed 's|^\./||' | sort)
echo "fuzz: $count targets run"
