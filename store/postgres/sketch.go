package postgres

import (
	"errors"
	"fmt"

	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"
)

// Unique users are counted with HyperLogLog sketches
// (github.com/axiomhq/hyperloglog, LogLog-Beta estimator), one per rollup row,
// stored in the users_hll column and merged in Go: PostgreSQL cannot merge
// them without an extension.
//
// The precision is 16 (2^16 one-byte registers). Its relative standard error
// is 1.04/sqrt(2^16) ≈ 0.41 %, so an estimate of a million distinct users is
// within 1 % of the truth with about 99 % probability (1 % ≈ 2.5 standard
// errors). Precision 14, the library default, has 0.81 %: one estimate in four
// would miss 1 %. (Measured with this hash over 40 sets of a million users:
// root-mean-square error 0.33 %, worst 0.72 %; precision 14 missed 1 % in 12
// of the 40.) The price is the dense form, 64 KiB per row; rows stay in
// the sparse form (a few bytes per distinct user, and nearly exact) until
// that is larger, so only buckets with tens of thousands of distinct users
// pay it.
const sketchPrecision = 16

// UniqueUsersRelativeError is the relative standard error of every
// unique-user estimate this package returns: 1.04/sqrt(2^16) ≈ 0.0041. About
// 68 % of estimates are within this fraction of the true count, 99.7 % within
// three times it. Small counts, while their sketch is sparse, are nearly
// exact.
//
// sqrt(2^16) is 2^8; the precision is even, so this stays a constant.
const UniqueUsersRelativeError = 1.04 / (1 << (sketchPrecision / 2))

// denseSketchSize is the encoded size of a dense sketch: an 8-byte header and
// one byte per register.
const denseSketchSize = 8 + 1<<sketchPrecision

// errBadSketch is wrapped by decodeSketch when stored bytes are not a sketch
// of this package's precision.
var errBadSketch = errors.New("invalid unique-user sketch")

// newSketch returns an empty sketch in the sparse form.
func newSketch() *hyperloglog.Sketch {
	sk, err := hyperloglog.NewSketch(sketchPrecision, true)
	if err != nil {
		// sketchPrecision is a constant inside the library's range.
		panic(err)
	}
	return sk
}

// hashUser is the hash every sketch is built from. It is part of the stored
// format: sketches can only be merged if their users were hashed alike, so
// it is pinned here (XXH64, seed 0) rather than left to the library's
// default, which may change between its versions.
func hashUser(userID string) uint64 {
	return xxhash.Sum64String(userID)
}

// encodeSketch returns the stored form of sk: the library's binary encoding,
// compacted, sparse while that is smaller than the dense form. It may compact
// sk in place.
func encodeSketch(sk *hyperloglog.Sketch) ([]byte, error) {
	// Estimate folds the sparse form's unsorted insert buffer into its
	// compressed list, which is several times smaller.
	sk.Estimate()
	b, err := sk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode unique-user sketch: %w", err)
	}
	if len(b) <= denseSketchSize {
		return b, nil
	}
	dense, err := hyperloglog.NewSketch(sketchPrecision, false)
	if err != nil {
		panic(err)
	}
	if err := dense.Merge(sk); err != nil {
		return nil, fmt.Errorf("encode unique-user sketch: %w", err)
	}
	b, err = dense.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode unique-user sketch: %w", err)
	}
	return b, nil
}

// decodeSketch parses a stored sketch. It refuses, with an error wrapping
// errBadSketch, anything that is not a well-formed sketch of sketchPrecision:
// the bytes come from the database, but a sketch of another precision cannot
// be merged, and corrupt bytes must fail the query rather than the process.
func decodeSketch(b []byte) (*hyperloglog.Sketch, error) {
	// The precision is the second header byte; checking it first spares
	// parsing a payload that could not be merged anyway.
	if len(b) >= 2 && b[1] != sketchPrecision {
		return nil, fmt.Errorf("%w: precision %d, want %d", errBadSketch, b[1], sketchPrecision)
	}
	var sk hyperloglog.Sketch
	if err := sk.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSketch, err)
	}
	return &sk, nil
}
