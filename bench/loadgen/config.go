package loadgen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"time"
)

// Defaults of [Config].
const (
	DefaultTarget           = "127.0.0.1:9090"
	DefaultZipfS            = 1.1
	DefaultBatchSize        = 500
	DefaultDuration         = 30 * time.Second
	DefaultInFlight         = 8
	DefaultUsers            = 1_000_000
	DefaultDrainTimeout     = 5 * time.Second
	DefaultProgressInterval = time.Second
	DefaultMaxMessageBytes  = 8 << 20
)

// Limits of the values a [Config] may hold. The event and batch limits are those of
// ingest.proto; the others keep a mistyped flag from exhausting the machine.
const (
	// MaxBatchSize is the contract's largest batch.
	MaxBatchSize = 10000
	// MaxTenants is how many tenants fit the 4 hex digits of an event id that name the tenant.
	MaxTenants = 1 << 16
	// MaxStreams bounds the number of workers (each with its own connection).
	MaxStreams = 4096
	// MaxInFlight bounds the unanswered batches of one worker.
	MaxInFlight = 1024
	// MaxUsers is how many distinct user ids fit the 8 decimal digits of a user_id.
	MaxUsers = 100_000_000
	// MaxRunIDLen is the longest run id.
	MaxRunIDLen = 16
	// maxBufferedBytes bounds Streams × InFlight × BatchSize × ~250 bytes of pre-encoded batches.
	maxBufferedBytes = 4 << 30
	// approxEventBytes is the most an encoded event of the generated mix takes, with its framing.
	approxEventBytes = 260
)

// DefaultStreams is the default number of workers (one connection each): 2 × GOMAXPROCS.
func DefaultStreams() int { return 2 * runtime.GOMAXPROCS(0) }

// TenantKey is one tenant the load is spread over: a label for the report and the API key
// (with SCOPE_INGEST) its streams authenticate with.
type TenantKey struct {
	Tenant string
	Secret string
}

// String names the tenant; the secret is never part of it, so a TenantKey may be logged.
func (k TenantKey) String() string { return k.Tenant }

// Config configures [Run]. Zero values mean the documented defaults.
type Config struct {
	// Target is the gRPC address (host:port) of the IngestService (default 127.0.0.1:9090).
	Target string
	// AllowNonLoopback permits a Target that is not a loopback address. Off by default so a
	// typo never aims load at a shared host.
	AllowNonLoopback bool
	// Tenants are the tenants to load, in Zipf rank order (the first gets the most traffic).
	Tenants []TenantKey
	// ZipfS is the skew s: tenant i gets a share ∝ 1/(i+1)^s (0 is uniform). Zero is a valid
	// value, not "default": callers wanting the default use DefaultZipfS.
	ZipfS float64
	// Rate is the target in events per second over all workers; 0 sends as fast as the
	// server answers.
	Rate float64
	// BatchSize is the number of events per batch, 1 to 10,000 (default 500).
	BatchSize int
	// Duration is how long batches are sent, warmup included (default 30s).
	Duration time.Duration
	// Warmup is the first part of Duration left out of the measured window (default none).
	Warmup time.Duration
	// Streams is the number of workers, each with its own connection (default 2 × GOMAXPROCS).
	Streams int
	// InFlight is how many batches of one worker may be unanswered at once (default 8, the
	// number of batches abacusd processes at once on one stream).
	InFlight int
	// Users is the size of the pool user_ids are drawn from (default 1,000,000).
	Users int
	// DuplicateRatio is the share of events sent with an id already used for the same tenant
	// (default 0).
	DuplicateRatio float64
	// Seed seeds the generator's random numbers (0: a random seed).
	Seed uint64
	// RunID, at most 16 characters of [a-z0-9], is part of every event id, so ids of separate
	// runs never collide (empty: random).
	RunID string
	// DrainTimeout bounds the wait for answers to batches in flight when sending stops
	// (default 5s).
	DrainTimeout time.Duration
	// ProgressInterval is how often Run reports [Progress] (default 1s).
	ProgressInterval time.Duration
	// MaxMessageBytes bounds a response message and must exceed an encoded batch (default
	// 8 MiB, abacusd's default).
	MaxMessageBytes int
}

// withDefaults fills the zero values that have a default.
func (c Config) withDefaults() Config {
	if c.Target == "" {
		c.Target = DefaultTarget
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Streams == 0 {
		c.Streams = DefaultStreams()
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64() | 1
	}
	if c.RunID == "" {
		c.RunID = NewRunID()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return c
}

// Validate reports every problem of the configuration, joined. Zero values that have a default
// are valid.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("loadgen: config: "+format, args...))
	}
	if c.Target != "" {
		if err := CheckLoopback(c.Target); err != nil {
			if !c.AllowNonLoopback {
				add("target: %v (AllowNonLoopback permits it)", err)
			} else if _, _, serr := net.SplitHostPort(c.Target); serr != nil {
				add("target %q: %v", c.Target, serr)
			}
		}
	}
	if len(c.Tenants) == 0 {
		add("no tenants: give an admin token or a keys file")
	}
	if len(c.Tenants) > MaxTenants {
		add("%d tenants, at most %d", len(c.Tenants), MaxTenants)
	}
	for i, t := range c.Tenants {
		if t.Secret == "" {
			add("tenant %d (%s) has no API key", i, t.Tenant)
		}
		if !validSecret(t.Secret) {
			add("tenant %d (%s): API key has characters that cannot go into a header", i, t.Tenant)
		}
	}
	if c.ZipfS < 0 || math.IsNaN(c.ZipfS) || math.IsInf(c.ZipfS, 0) {
		add("zipf s is %v, must be finite and ≥ 0", c.ZipfS)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		add("rate is %v events/s, must be finite and ≥ 0 (0 = as fast as possible)", c.Rate)
	}
	if c.BatchSize < 0 || c.BatchSize > MaxBatchSize {
		add("batch size is %d events, must be 1 to %d", c.BatchSize, MaxBatchSize)
	}
	if c.Duration < 0 {
		add("duration is %v, must be positive", c.Duration)
	}
	duration := c.Duration
	if duration == 0 {
		duration = DefaultDuration
	}
	if c.Warmup < 0 || c.Warmup >= duration {
		add("warmup is %v, must be ≥ 0 and shorter than the duration (%v)", c.Warmup, duration)
	}
	if c.Streams < 0 || c.Streams > MaxStreams {
		add("streams is %d, must be 1 to %d", c.Streams, MaxStreams)
	}
	if c.InFlight < 0 || c.InFlight > MaxInFlight {
		add("in-flight is %d, must be 1 to %d", c.InFlight, MaxInFlight)
	}
	if c.Users < 0 || c.Users > MaxUsers {
		add("users is %d, must be 1 to %d", c.Users, MaxUsers)
	}
	if c.DuplicateRatio < 0 || c.DuplicateRatio > 1 || math.IsNaN(c.DuplicateRatio) {
		add("duplicate ratio is %v, must be 0 to 1", c.DuplicateRatio)
	}
	if c.DrainTimeout < 0 {
		add("drain timeout is %v, must be positive", c.DrainTimeout)
	}
	if c.ProgressInterval < 0 {
		add("progress interval is %v, must be positive", c.ProgressInterval)
	}
	if !validRunID(c.RunID) {
		add("run id %q must be at most %d characters of [a-z0-9]", c.RunID, MaxRunIDLen)
	}
	if c.MaxMessageBytes < 0 {
		add("max message bytes is %d, must be positive", c.MaxMessageBytes)
	}
	d := c.withDefaults()
	if c.BatchSize >= 0 && c.Streams >= 0 && c.InFlight >= 0 {
		if b := int64(d.Streams) * int64(d.InFlight) * int64(d.BatchSize) * approxEventBytes; b > maxBufferedBytes {
			add("streams × in-flight × batch size would hold about %d MiB of batches, at most %d MiB", b>>20, maxBufferedBytes>>20)
		}
	}
	if c.BatchSize >= 0 && c.BatchSize <= MaxBatchSize && c.MaxMessageBytes >= 0 && d.BatchSize*approxEventBytes+64 > d.MaxMessageBytes {
		add("a batch of %d events (about %d bytes) exceeds max message bytes %d", d.BatchSize, d.BatchSize*approxEventBytes, d.MaxMessageBytes)
	}
	return errors.Join(errs...)
}

// NewRunID returns a random run id of 8 characters of [a-z0-9].
func NewRunID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 8)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

func validRunID(s string) bool {
	if len(s) > MaxRunIDLen {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// validSecret reports whether s can be sent in an HTTP/2 header value: printable ASCII.
func validSecret(s string) bool {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// CheckLoopback returns an error unless addr is host:port with a host that is a loopback IP or
// "localhost".
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host: give 127.0.0.1", addr)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("address %q is not a loopback address", addr)
		}
		return nil
	}
	if host != "localhost" {
		return fmt.Errorf("address %q: host %q is not a loopback IP or localhost", addr, host)
	}
	return nil
}
