//go:build race

package rollup_test

func init() { raceEnabled = true }
