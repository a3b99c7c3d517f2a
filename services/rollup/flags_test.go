package rollup_test

import (
	"flag"
	"os"
)

// long selects the long variants of the exactly-once proofs: more events,
// more kills, a one-minute database outage. make test runs the default
// variants; run the long ones with
//
//	go test -race ./services/rollup -rollup.long -timeout 30m
//
// or with ABACUS_ROLLUP_LONG=1 in the environment.
var long = flag.Bool("rollup.long", os.Getenv("ABACUS_ROLLUP_LONG") == "1", "run the long variants of the exactly-once proofs")
