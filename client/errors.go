package client

import "errors"

// ErrClosed is returned by Send and TrySend once Close has begun, and by a
// second Close.
var ErrClosed = errors.New("client: closed")

// ErrBufferFull is returned by TrySend when the client already holds
// Config.BufferEvents events (or Config.BufferBytes bytes of them).
var ErrBufferFull = errors.New("client: buffer full")

// ErrNilEvent is returned by Send and TrySend for a nil event.
var ErrNilEvent = errors.New("client: nil event")

// ErrEventTooLarge is returned by Send and TrySend for an event whose encoding
// is larger than Config.MaxBatchBytes: no batch could carry it.
var ErrEventTooLarge = errors.New("client: event larger than the batch byte limit")

// ErrRetriesExhausted is the Err of a Verdict for an event the client gave up
// on after Config.MaxRetries retries. It wraps the last cause: the stream
// error, or a description of the last retryable verdict (Verdict.Reason says
// which).
var ErrRetriesExhausted = errors.New("client: retries exhausted")

// ErrAbandoned is the Err of a Verdict for an event that had no final verdict
// when Close's context ended. The event may or may not have been accepted:
// sending it again with the same event_id is safe, the server counts it once.
var ErrAbandoned = errors.New("client: closed before the event had a final verdict; it may or may not have been accepted")

// errResponseTimeout is the cause of a stream the client ends because a batch
// stayed unanswered longer than Config.ResponseTimeout.
var errResponseTimeout = errors.New("client: batch unanswered within the response timeout")

// errStreamEnded is the error of a stream the server ended without an error
// while batches were unanswered.
var errStreamEnded = errors.New("client: stream ended by the server with batches unanswered")
