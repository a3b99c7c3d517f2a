package rollup

import "errors"

var (
	// ErrInvalidConfig is wrapped by every problem [Config.Validate] reports.
	ErrInvalidConfig = errors.New("rollup: invalid config")

	// ErrAlreadyRunning is returned by [Consumer.Run] when the consumer is
	// already running or has run: a Consumer runs once.
	ErrAlreadyRunning = errors.New("rollup: consumer already ran")

	// ErrInvalidChange is wrapped by the errors of [DecodeChanges] and by
	// the buckets [EncodeChanges] cannot encode.
	ErrInvalidChange = errors.New("rollup: invalid change message")
)
