package client

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Defaults and limits of [Config].
const (
	// DefaultBatchSize is Config.BatchSize's default.
	DefaultBatchSize = 500
	// MaxBatchSize is the contract's limit of events per batch.
	MaxBatchSize = 10000
	// DefaultFlushInterval is Config.FlushInterval's default.
	DefaultFlushInterval = 200 * time.Millisecond
	// DefaultMaxInFlight is Config.MaxInFlight's default, the number of
	// batches the server processes at once per stream by default.
	DefaultMaxInFlight = 8
	// MaxMaxInFlight is the largest Config.MaxInFlight.
	MaxMaxInFlight = 1024
	// DefaultBufferEvents is Config.BufferEvents's default.
	DefaultBufferEvents = 100000
	// DefaultBufferBytes is Config.BufferBytes's default.
	DefaultBufferBytes = 64 << 20
	// DefaultMaxBatchBytes is Config.MaxBatchBytes's default, half the
	// server's default message limit.
	DefaultMaxBatchBytes = 4 << 20
	// MinMaxBatchBytes is the smallest Config.MaxBatchBytes.
	MinMaxBatchBytes = 1 << 10
	// DefaultMaxRetries is Config.MaxRetries's default.
	DefaultMaxRetries = 10
	// DefaultBackoffBase is Config.BackoffBase's default.
	DefaultBackoffBase = 100 * time.Millisecond
	// DefaultBackoffMax is Config.BackoffMax's default.
	DefaultBackoffMax = 30 * time.Second
	// DefaultResponseTimeout is Config.ResponseTimeout's default.
	DefaultResponseTimeout = 30 * time.Second

	// MaxQuotaRetryAfter is the longest retry_after of a QUOTA_EXHAUSTED
	// verdict the client waits for. The quota resets at the start of a
	// calendar month, so a longer delay means the tenant is out of events
	// for hours or days: holding the events that long would only fill the
	// buffer and block Send, so such an event gets its final verdict
	// (rejected, QUOTA_EXHAUSTED) at once.
	MaxQuotaRetryAfter = time.Hour

	// maxDuration bounds every duration setting, so that a typo cannot make
	// the client wait for years.
	maxDuration = 24 * time.Hour
)

// Config configures a [Client]. Zero values mean the documented defaults.
//
// Config's String, GoString, Format and LogValue methods redact APIKey, so a
// Config can be printed with any verb and logged.
type Config struct {
	// Target is the gRPC address of an Abacus ingest endpoint, in the syntax
	// of grpc.NewClient ("abacus.example.com:443", "dns:///host:9090").
	// Required.
	Target string

	// APIKey is the tenant API key, with SCOPE_INGEST. It is sent as
	// `authorization: Bearer <key>` metadata on the stream and never logged.
	// Required.
	APIKey string

	// Insecure sends everything, the API key included, in plaintext. It is
	// for local development only and must be asked for: without it the
	// client uses TLS with the system's root certificates.
	Insecure bool

	// DialOptions are passed to grpc.NewClient after the client's own
	// (transport credentials as above, the API key, keepalive pings every
	// 30s, responses up to 64 MiB), so they can replace any of them — for
	// example grpc.WithTransportCredentials with a private CA.
	DialOptions []grpc.DialOption

	// BatchSize is the most events sent in one batch (default 500, at most
	// 10,000). A batch is sent when it is full, when its oldest event has
	// waited FlushInterval, or at once during Flush and Close.
	BatchSize int

	// MaxBatchBytes is the most encoded bytes of events in one batch
	// (default 4 MiB, at least 1 KiB); keep it below the server's largest
	// accepted message (8 MiB by default). An event larger than this is
	// refused by Send with ErrEventTooLarge.
	MaxBatchBytes int

	// FlushInterval is the longest an event waits for its batch to fill
	// (default 200ms).
	FlushInterval time.Duration

	// MaxInFlight is how many batches may be sent and unanswered on the
	// stream at once (default 8, at most 1024; the server processes 8 per
	// stream by default and makes the rest wait).
	MaxInFlight int

	// BufferEvents bounds the events the client holds: queued, in flight,
	// awaiting a retry, or awaiting delivery of their verdict to OnVerdict
	// (default 100,000). When it is reached, Send blocks until there is room
	// or its context ends, and TrySend returns ErrBufferFull.
	BufferEvents int

	// BufferBytes bounds the encoded bytes of the events the client holds,
	// in the same way (default 64 MiB; at least MaxBatchBytes).
	BufferBytes int

	// MaxRetries is how many times an event is sent again after a retryable
	// outcome before the client gives up on it (default 10; negative means
	// never retry).
	MaxRetries int

	// BackoffBase and BackoffMax shape the delay before the n-th retry: a
	// uniformly random duration between 0 and
	// min(BackoffMax, BackoffBase·2^(n-1)) ("full jitter"), or the server's
	// retry delay if that is longer (defaults 100ms and 30s). Reconnecting
	// after consecutive stream failures uses the same schedule.
	BackoffBase time.Duration
	BackoffMax  time.Duration

	// ResponseTimeout is how long a batch may stay unanswered before the
	// client considers the stream broken, ends it and sends the batch's
	// events again on a new one (default 30s). The time a batch waits for
	// the server to read it counts.
	ResponseTimeout time.Duration

	// OnVerdict, if set, is called with the final verdict of every event,
	// one call at a time, from a goroutine of the client. It must not call
	// Send, Flush or Close (TrySend and Stats are fine); while it runs, the
	// event still counts against BufferEvents, so a slow OnVerdict slows
	// Send down rather than growing memory.
	OnVerdict func(Verdict)

	// Logger receives the client's logs (default: discarded). The API key is
	// never logged.
	Logger *slog.Logger
}

// String describes the Config with the API key redacted.
func (c Config) String() string {
	return fmt.Sprintf("client.Config{Target: %q, APIKey: %s, Insecure: %t, DialOptions: %d, BatchSize: %d, "+
		"MaxBatchBytes: %d, FlushInterval: %v, MaxInFlight: %d, BufferEvents: %d, BufferBytes: %d, MaxRetries: %d, "+
		"BackoffBase: %v, BackoffMax: %v, ResponseTimeout: %v, OnVerdict: %t, Logger: %t}",
		c.Target, redacted(c.APIKey), c.Insecure, len(c.DialOptions), c.BatchSize,
		c.MaxBatchBytes, c.FlushInterval, c.MaxInFlight, c.BufferEvents, c.BufferBytes, c.MaxRetries,
		c.BackoffBase, c.BackoffMax, c.ResponseTimeout, c.OnVerdict != nil, c.Logger != nil)
}

// GoString is String, so that %#v redacts the API key too.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb, so that no format (%d, %#v, ...)
// prints the API key.
func (c Config) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue makes slog log the Config with the API key redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("target", c.Target),
		slog.String("api_key", redacted(c.APIKey)),
		slog.Bool("insecure", c.Insecure),
		slog.Int("batch_size", c.BatchSize),
		slog.Int("max_batch_bytes", c.MaxBatchBytes),
		slog.Duration("flush_interval", c.FlushInterval),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("buffer_events", c.BufferEvents),
		slog.Int("buffer_bytes", c.BufferBytes),
		slog.Int("max_retries", c.MaxRetries),
		slog.Duration("backoff_base", c.BackoffBase),
		slog.Duration("backoff_max", c.BackoffMax),
		slog.Duration("response_timeout", c.ResponseTimeout),
	)
}

func redacted(key string) string {
	if key == "" {
		return "<empty>"
	}
	return "<redacted>"
}

// Validate reports every problem with the Config, joined. Zero values are
// valid (they mean the defaults) except for Target and APIKey.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("client: config: "+format, args...))
	}
	if c.Target == "" {
		add("Target is empty")
	}
	switch {
	case c.APIKey == "":
		add("APIKey is empty")
	case !validHeaderValue(c.APIKey):
		// The key itself is not echoed.
		add("APIKey has characters not allowed in a header (only printable ASCII without spaces)")
	}
	if c.BatchSize < 0 || c.BatchSize > MaxBatchSize {
		add("BatchSize is %d, must be 1-%d (0 means %d)", c.BatchSize, MaxBatchSize, DefaultBatchSize)
	}
	if c.MaxBatchBytes != 0 && c.MaxBatchBytes < MinMaxBatchBytes {
		add("MaxBatchBytes is %d, must be at least %d (0 means %d)", c.MaxBatchBytes, MinMaxBatchBytes, DefaultMaxBatchBytes)
	}
	if c.FlushInterval < 0 || c.FlushInterval > maxDuration {
		add("FlushInterval is %v, must be positive and at most %v (0 means %v)", c.FlushInterval, maxDuration, DefaultFlushInterval)
	}
	if c.MaxInFlight < 0 || c.MaxInFlight > MaxMaxInFlight {
		add("MaxInFlight is %d, must be 1-%d (0 means %d)", c.MaxInFlight, MaxMaxInFlight, DefaultMaxInFlight)
	}
	if c.BufferEvents < 0 {
		add("BufferEvents is %d, must be positive (0 means %d)", c.BufferEvents, DefaultBufferEvents)
	}
	if c.BufferBytes < 0 {
		add("BufferBytes is %d, must be positive (0 means %d)", c.BufferBytes, DefaultBufferBytes)
	}
	if c.BackoffBase < 0 || c.BackoffBase > maxDuration {
		add("BackoffBase is %v, must be positive and at most %v (0 means %v)", c.BackoffBase, maxDuration, DefaultBackoffBase)
	}
	if c.BackoffMax < 0 || c.BackoffMax > maxDuration {
		add("BackoffMax is %v, must be positive and at most %v (0 means %v)", c.BackoffMax, maxDuration, DefaultBackoffMax)
	}
	if c.ResponseTimeout < 0 || c.ResponseTimeout > maxDuration {
		add("ResponseTimeout is %v, must be positive and at most %v (0 means %v)", c.ResponseTimeout, maxDuration, DefaultResponseTimeout)
	}
	// Relations between settings, with the defaults filled in, only when the
	// settings are valid on their own.
	if len(errs) == 0 {
		d := c.withDefaults()
		if d.BackoffBase > d.BackoffMax {
			add("BackoffBase (%v) is larger than BackoffMax (%v)", d.BackoffBase, d.BackoffMax)
		}
		if d.BufferBytes < d.MaxBatchBytes {
			add("BufferBytes (%d) is smaller than MaxBatchBytes (%d)", d.BufferBytes, d.MaxBatchBytes)
		}
	}
	return errors.Join(errs...)
}

// validHeaderValue reports whether s can be sent in the authorization header
// after "Bearer ": printable ASCII without spaces.
func validHeaderValue(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// withDefaults returns c with zero values replaced by the defaults; the
// number of retries becomes 0 for "never".
func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.BufferEvents == 0 {
		c.BufferEvents = DefaultBufferEvents
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultBufferBytes
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
