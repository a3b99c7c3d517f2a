package ratelimit

import "errors"

var (
	// ErrInvalidArgument is returned (wrapped, with what is wrong) for a call
	// with an invalid tenant, bucket kind, limit or count. It is a caller bug,
	// never a client's fault and never a Redis problem.
	ErrInvalidArgument = errors.New("ratelimit: invalid argument")

	// ErrUnavailable is returned (wrapped, with the cause) by
	// [Quota.MonthlyEvents] and [Quota.Flush] when Redis cannot be reached.
	// Decisions (AllowN, Reserve, Refund) never return it: they fall back.
	ErrUnavailable = errors.New("ratelimit: counter store unavailable")
)
