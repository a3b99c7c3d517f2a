package eventlog

import "errors"

var (
	// ErrUnavailable means a batch could not be written durably: the broker did
	// not acknowledge it before the caller's deadline, refused it, or the
	// producer's buffer is full. It is retryable; nothing of the batch may be
	// reported as accepted (part of it may still be written, which
	// deduplication makes harmless).
	ErrUnavailable = errors.New("eventlog: event log unavailable")

	// ErrPoison means a record can never be processed: its headers, key and
	// body are missing, malformed or disagree. Readers send such records to
	// [DeadLetterTopic] rather than retry them. [Decode] wraps it with the
	// reason.
	ErrPoison = errors.New("eventlog: poison record")
)
