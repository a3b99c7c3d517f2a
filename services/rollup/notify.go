package rollup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Notifier is told which rollup buckets a committed batch changed, so that
// caches can drop them and live watchers can refresh. Set it as
// Config.Notifier; [RedisNotifier] is the implementation Abacus runs.
type Notifier interface {
	// Notify publishes changed, which is sorted by tenant, type and bucket
	// and holds every bucket once. It must return by ctx's deadline and must
	// not keep changed.
	Notify(ctx context.Context, changed []postgres.ChangedBucket) error
}

// Change messages: what [RedisNotifier] publishes and [DecodeChanges] reads.
//
// A message goes to the channel [ChangesChannel] of its tenant
// ("abacus:changes:" followed by the tenant ID) and is a JSON object:
//
//		{"v":1,"tenant_id":"acme","changes":[{"event_type":"page_view","buckets":[1773500940,1773501000]}]}
//
//	  - v is [ChangeFormatVersion]; a reader must ignore messages of a
//	    version it does not know.
//	  - tenant_id repeats the channel's tenant.
//	  - changes has one entry per event type, in byte order of the type;
//	    buckets are the starts of the changed 1-minute rollup buckets (UTC) as
//	    Unix seconds, ascending. Coarser granularities contain them.
//
// A message never exceeds [MaxChangeMessageBytes] nor lists more than
// [MaxChangesPerMessage] buckets: a batch that changed more is announced in
// several messages. Messages say "this bucket changed", never by how much,
// so a reader re-reads the bucket; a lost message (Redis down, a
// subscriber reconnecting) only delays a refresh until the reader's own
// expiry, which is why every reader must have one.
const (
	// ChangesChannelPrefix starts every change channel; subscribe to
	// ChangesChannelPrefix+"*" for every tenant's.
	ChangesChannelPrefix = "abacus:changes:"

	// ChangeFormatVersion is the version ("v") of the messages written.
	ChangeFormatVersion = 1

	// MaxChangeMessageBytes bounds one encoded message.
	MaxChangeMessageBytes = 64 << 10

	// MaxChangesPerMessage bounds the buckets of one message.
	MaxChangesPerMessage = 1000

	// MaxChangeTypeBytes bounds an event type in a message. Ingest allows
	// 64 characters; longer types are left out of the messages (and Notify
	// reports them) rather than written in a form readers would refuse.
	MaxChangeTypeBytes = 256
)

// minBucketUnix and maxBucketUnix are the Unix seconds of years 1 and 9999,
// the range the store accepts for event times.
var (
	minBucketUnix = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	maxBucketUnix = time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC).Unix()
)

// ChangesChannel is the Redis channel that carries tenant's change
// messages.
func ChangesChannel(tenant tenancy.ID) string { return ChangesChannelPrefix + string(tenant) }

// changeMessage is the JSON form of a change message.
type changeMessage struct {
	Version int           `json:"v"`
	Tenant  string        `json:"tenant_id"`
	Changes []typeChanges `json:"changes"`
}

type typeChanges struct {
	EventType string  `json:"event_type"`
	Buckets   []int64 `json:"buckets"`
}

// Overheads used to keep messages under MaxChangeMessageBytes while
// building them: a bucket is at most 21 bytes with its comma (a negative
// 19-digit number), a type entry adds its JSON-encoded name and 32 bytes of
// keys and punctuation, the message's own keys and punctuation stay under
// 64 bytes.
const (
	bucketBytes       = 21
	typeEntryBytes    = 32
	messageFrameBytes = 64
)

// jsonLen is the length of s encoded as a JSON string.
func jsonLen(s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		return 6 * len(s) // not reached: s is valid UTF-8
	}
	return len(b)
}

// EncodeChanges encodes changed, all of it tenant's, as one or more change
// messages (see [ChangesChannelPrefix] for the format). Buckets a reader
// would refuse — of an empty, over-long ([MaxChangeTypeBytes]) or non-UTF-8
// type, or not the start of a minute in years 1-9999 — are left out and
// reported in an error wrapping [ErrInvalidChange], returned next to the
// messages of the rest. A tenant that is not a valid tenant ID, or a bucket
// of another tenant, fails the whole call.
func EncodeChanges(tenant tenancy.ID, changed []postgres.ChangedBucket) ([][]byte, error) {
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidChange, err)
	}
	sorted := slices.Clone(changed)
	slices.SortFunc(sorted, compareBuckets)
	sorted = slices.CompactFunc(sorted, func(a, b postgres.ChangedBucket) bool { return compareBuckets(a, b) == 0 })

	var (
		out      [][]byte
		leftOut  int
		examples []string
		msg      = changeMessage{Version: ChangeFormatVersion, Tenant: string(tenant)}
		frame    = messageFrameBytes + jsonLen(string(tenant))
		size     = frame
		count    int
	)
	flush := func() error {
		if count == 0 {
			return nil
		}
		b, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("rollup: encode changes: %w", err)
		}
		out = append(out, b)
		msg.Changes, size, count = nil, frame, 0
		return nil
	}
	for _, b := range sorted {
		if b.Tenant != tenant {
			return nil, fmt.Errorf("%w: bucket of tenant %q in the changes of %q", ErrInvalidChange, b.Tenant, tenant)
		}
		unix := b.Bucket.Unix()
		if b.Type == "" || len(b.Type) > MaxChangeTypeBytes || !utf8.ValidString(b.Type) ||
			!b.Bucket.Equal(time.Unix(unix, 0)) || !validBucket(unix) {
			leftOut++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("%.64q at %s", b.Type, b.Bucket.UTC().Format(time.RFC3339Nano)))
			}
			continue
		}
		last := len(msg.Changes) - 1
		newType := last < 0 || msg.Changes[last].EventType != b.Type
		need := bucketBytes
		if newType {
			need += typeEntryBytes + jsonLen(b.Type)
		}
		if count == MaxChangesPerMessage || size+need > MaxChangeMessageBytes {
			if err := flush(); err != nil {
				return nil, err
			}
			newType, need = true, bucketBytes+typeEntryBytes+jsonLen(b.Type)
		}
		if newType {
			msg.Changes = append(msg.Changes, typeChanges{EventType: b.Type})
		}
		entry := &msg.Changes[len(msg.Changes)-1]
		entry.Buckets = append(entry.Buckets, unix)
		size += need
		count++
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if leftOut > 0 {
		return out, fmt.Errorf("%w: left out %d buckets whose event type is empty, longer than %d bytes or not UTF-8, or that do not start a minute in years 1-9999, such as %s",
			ErrInvalidChange, leftOut, MaxChangeTypeBytes, strings.Join(examples, ", "))
	}
	return out, nil
}

// validBucket reports whether unix (seconds) starts a minute in years
// 1-9999.
func validBucket(unix int64) bool {
	return unix%60 == 0 && unix >= minBucketUnix && unix <= maxBucketUnix
}

// DecodeChanges reads one change message, refusing (with an error wrapping
// [ErrInvalidChange]) anything [EncodeChanges] would not write: a message
// over [MaxChangeMessageBytes] or [MaxChangesPerMessage], another version,
// an invalid tenant, an empty, over-long or non-UTF-8 type, a type listed
// twice, or a bucket that is not the start of a minute in years 1-9999 or
// not ascending. Unknown fields are ignored, so later versions of the
// writer may add some.
func DecodeChanges(data []byte) (tenancy.ID, []postgres.ChangedBucket, error) {
	if len(data) > MaxChangeMessageBytes {
		return "", nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidChange, len(data), MaxChangeMessageBytes)
	}
	var msg changeMessage
	if err := json.Unmarshal(data, &msg); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrInvalidChange, err)
	}
	if msg.Version != ChangeFormatVersion {
		return "", nil, fmt.Errorf("%w: version %d, want %d", ErrInvalidChange, msg.Version, ChangeFormatVersion)
	}
	tenant, err := tenancy.ParseID(msg.Tenant)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrInvalidChange, err)
	}
	var (
		out  []postgres.ChangedBucket
		prev string
	)
	for i, tc := range msg.Changes {
		if tc.EventType == "" || len(tc.EventType) > MaxChangeTypeBytes || !utf8.ValidString(tc.EventType) {
			return "", nil, fmt.Errorf("%w: change %d: event type is empty, longer than %d bytes or not UTF-8", ErrInvalidChange, i, MaxChangeTypeBytes)
		}
		if i > 0 && tc.EventType <= prev {
			return "", nil, fmt.Errorf("%w: change %d: event types are not in ascending order", ErrInvalidChange, i)
		}
		prev = tc.EventType
		if len(tc.Buckets) == 0 {
			return "", nil, fmt.Errorf("%w: change %d: no buckets", ErrInvalidChange, i)
		}
		for j, s := range tc.Buckets {
			if !validBucket(s) {
				return "", nil, fmt.Errorf("%w: change %d: bucket %d is not the start of a minute in years 1-9999", ErrInvalidChange, i, j)
			}
			if j > 0 && s <= tc.Buckets[j-1] {
				return "", nil, fmt.Errorf("%w: change %d: buckets are not in ascending order", ErrInvalidChange, i)
			}
			if len(out) == MaxChangesPerMessage {
				return "", nil, fmt.Errorf("%w: more than %d buckets", ErrInvalidChange, MaxChangesPerMessage)
			}
			out = append(out, postgres.ChangedBucket{Tenant: tenant, Type: tc.EventType, Bucket: time.Unix(s, 0).UTC()})
		}
	}
	if len(out) == 0 {
		return "", nil, fmt.Errorf("%w: no changes", ErrInvalidChange)
	}
	return tenant, out, nil
}

func compareBuckets(a, b postgres.ChangedBucket) int {
	return cmp.Or(
		strings.Compare(string(a.Tenant), string(b.Tenant)),
		strings.Compare(a.Type, b.Type),
		a.Bucket.Compare(b.Bucket),
	)
}

// RedisNotifier publishes change messages with Redis PUBLISH, one channel
// per tenant ([ChangesChannel]); every message of one Notify goes in one
// pipelined round trip. Pub/sub is fire and forget: a subscriber that is
// not connected at that moment misses the message.
type RedisNotifier struct {
	rdb redis.UniversalClient
}

var _ Notifier = (*RedisNotifier)(nil)

// NewRedisNotifier returns a notifier publishing through rdb.
func NewRedisNotifier(rdb redis.UniversalClient) (*RedisNotifier, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: redis client is required", ErrInvalidConfig)
	}
	return &RedisNotifier{rdb: rdb}, nil
}

// Notify publishes changed, grouped by tenant. It returns the encoding
// problems and the failed PUBLISH commands, joined; the messages that could
// be sent are sent regardless.
func (n *RedisNotifier) Notify(ctx context.Context, changed []postgres.ChangedBucket) error {
	var errs []error
	pipe := n.rdb.Pipeline()
	for len(changed) > 0 {
		tenant := changed[0].Tenant
		end := 1
		for end < len(changed) && changed[end].Tenant == tenant {
			end++
		}
		msgs, err := EncodeChanges(tenant, changed[:end])
		if err != nil {
			errs = append(errs, err)
		}
		for _, m := range msgs {
			pipe.Publish(ctx, ChangesChannel(tenant), m)
		}
		changed = changed[end:]
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rollup: publish changes: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Bounds of the notification queue between the polling goroutine and the
// notifier.
const (
	// maxPendingChanges bounds the buckets waiting for the notifier. While
	// the notifier is slower than the batches, repeats coalesce; beyond
	// this many distinct buckets the changes of further batches are
	// dropped (and counted).
	maxPendingChanges = 100_000

	// notifyTimeout bounds one Notify call.
	notifyTimeout = 5 * time.Second

	// flushTimeout bounds the last Notify on shutdown, which must not hold
	// up the process for long.
	flushTimeout = time.Second
)

// bucketKey is a [postgres.ChangedBucket] as a map key (time.Time values
// compare their location too).
type bucketKey struct {
	tenant tenancy.ID
	typ    string
	unix   int64
}

// changeQueue hands the changed buckets of committed batches to the
// notifier goroutine, coalescing repeats, without ever blocking the
// polling goroutine.
type changeQueue struct {
	mu      sync.Mutex
	pending map[bucketKey]struct{}
	wake    chan struct{} // capacity 1
}

func newChangeQueue() *changeQueue {
	return &changeQueue{pending: make(map[bucketKey]struct{}), wake: make(chan struct{}, 1)}
}

// add queues changed and reports whether all of it fit.
func (q *changeQueue) add(changed []postgres.ChangedBucket) bool {
	if len(changed) == 0 {
		return true
	}
	q.mu.Lock()
	fit := true
	for _, b := range changed {
		k := bucketKey{b.Tenant, b.Type, b.Bucket.Unix()}
		if _, ok := q.pending[k]; ok {
			continue
		}
		if len(q.pending) >= maxPendingChanges {
			fit = false
			continue
		}
		q.pending[k] = struct{}{}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return fit
}

// take empties the queue and returns what it held, sorted.
func (q *changeQueue) take() []postgres.ChangedBucket {
	q.mu.Lock()
	pending := q.pending
	if len(pending) > 0 {
		q.pending = make(map[bucketKey]struct{})
	}
	q.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	out := make([]postgres.ChangedBucket, 0, len(pending))
	for k := range pending {
		out = append(out, postgres.ChangedBucket{Tenant: k.tenant, Type: k.typ, Bucket: time.Unix(k.unix, 0).UTC()})
	}
	slices.SortFunc(out, compareBuckets)
	return out
}

// queueChanges hands a committed batch's changed buckets to the notifier.
func (c *Consumer) queueChanges(ctx context.Context, changed []postgres.ChangedBucket) {
	if c.changes == nil || c.changes.add(changed) {
		return
	}
	c.m.notifyFailures.WithLabelValues(notifyOverflow).Inc()
	c.notifyDown.failed(ctx, "queue changes", errors.New("too many changes waiting for the notifier; dropped some"))
}

// notifyLoop sends queued changes to the notifier until ctx ends, then
// sends what is left, bounded by flushTimeout.
func (c *Consumer) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-c.changes.wake:
			c.sendChanges(ctx, c.changes.take())
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			c.sendChanges(flushCtx, c.changes.take())
			return
		}
	}
}

func (c *Consumer) sendChanges(ctx context.Context, changed []postgres.ChangedBucket) {
	if len(changed) == 0 {
		return
	}
	nctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	if err := c.cfg.Notifier.Notify(nctx, changed); err != nil {
		c.m.notifyFailures.WithLabelValues(notifyPublish).Inc()
		c.notifyDown.failed(ctx, "notify", err)
		return
	}
	c.m.notified.Add(float64(len(changed)))
	c.notifyDown.recovered(ctx)
}

// notifyLogMessages are the outage log lines of the notifier.
var notifyLogMessages = streakMessages{
	failed:    "rollup change notification failed; batches go on, changes are dropped until it recovers",
	recovered: "rollup change notifications recovered",
}
