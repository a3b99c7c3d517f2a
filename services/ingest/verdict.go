package ingest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// verdicts is the outcome of judging one batch: every event is either in
// accepted or in rejected, never both.
type verdicts struct {
	accepted []acceptedEvent           // by ascending index
	rejected []*ingestv1.RejectedEvent // by ascending index
}

// acceptedEvent is an event that passed every check, encoded for the event
// log.
type acceptedEvent struct {
	index int32
	id    []byte // its event_id, for a verdict if it is throttled later
	eventlog.EncodedEvent
}

// encoded returns the events to write.
func (v *verdicts) encoded() []eventlog.EncodedEvent {
	out := make([]eventlog.EncodedEvent, len(v.accepted))
	for i, a := range v.accepted {
		out[i] = a.EncodedEvent
	}
	return out
}

// problem is why an event is rejected.
type problem struct {
	reason  ingestv1.RejectReason
	message string
	// retryAfter is set for throttled events: when to send them again.
	retryAfter time.Duration
}

func reject(reason ingestv1.RejectReason, format string, args ...any) *problem {
	return &problem{reason: reason, message: fmt.Sprintf(format, args...)}
}

// batchTooLarge is the problem of the events past the tenant's batch limit.
func batchTooLarge(n int, lim *tenancy.Limits) *problem {
	return reject(ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE,
		"batch has %d events, limit %d: events from index %d on were not processed; send them in another batch",
		n, lim.MaxBatchEvents, lim.MaxBatchEvents)
}

// judge gives every event of a decoded batch exactly one verdict under the
// tenant's limits lim, encoding the accepted ones. It serves unary Ingest
// (the REST gateway's path); streams are judged as received by judgeWire.
// The error is not about the events: it means the validator itself failed,
// a server bug.
func (s *Service) judge(events []*ingestv1.Event, now time.Time, lim *tenancy.Limits) (verdicts, error) {
	v := verdicts{accepted: make([]acceptedEvent, 0, len(events))}
	var tooMany *problem
	for i, ev := range events {
		if i >= lim.MaxBatchEvents {
			// Not looked at: the client has to send them again anyway, and
			// this keeps the work per request bounded by the limit.
			if tooMany == nil {
				tooMany = batchTooLarge(len(events), lim)
			}
			v.rejected = append(v.rejected, rejectedEvent(i, ev.GetEventId(), tooMany))
			continue
		}
		if err := s.judgeDecoded(&v, i, ev, now, lim); err != nil {
			return verdicts{}, err
		}
	}
	return v, nil
}

// judgeDecoded adds the verdict of the decoded event at index i to v: its
// rejection, or its canonical encoding.
func (s *Service) judgeDecoded(v *verdicts, i int, ev *ingestv1.Event, now time.Time, lim *tenancy.Limits) error {
	p, err := s.check(ev, now, lim)
	if err != nil {
		return err
	}
	if p != nil {
		v.rejected = append(v.rejected, rejectedEvent(i, ev.GetEventId(), p))
		return nil
	}
	a, err := encodeAccepted(i, ev)
	if err != nil {
		return err
	}
	v.accepted = append(v.accepted, a)
	return nil
}

// encodeAccepted is the accepted event at index i of a decoded event: its
// canonical encoding, and its shard key — its user, or its own id when it
// has none.
func encodeAccepted(i int, ev *ingestv1.Event) (acceptedEvent, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return acceptedEvent{}, fmt.Errorf("ingest: encode event: %w", err)
	}
	key := ev.GetUserId()
	if key == "" {
		key = ev.GetEventId()
	}
	return acceptedEvent{
		index:        int32(i),
		id:           []byte(ev.GetEventId()),
		EncodedEvent: eventlog.EncodedEvent{Data: data, ShardKey: []byte(key)},
	}, nil
}

// check returns why ev must be rejected under the limits lim, or nil. The
// first failing check decides.
func (s *Service) check(ev *ingestv1.Event, now time.Time, lim *tenancy.Limits) (*problem, error) {
	if ev == nil {
		ev = &ingestv1.Event{} // cannot come off the wire; rejected as empty
	}
	if p := checkUTF8(ev); p != nil {
		return p, nil
	}
	if !plainValid(ev) {
		if err := s.validator.Validate(ev); err != nil {
			var ve *protovalidate.ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				return nil, fmt.Errorf("ingest: validate event: %w", err)
			}
			return describe(ev, firstViolation(ve.Violations)), nil
		}
	}
	if n := len(ev.GetProperties()); n > lim.MaxProperties {
		return reject(ingestv1.RejectReason_REJECT_REASON_TOO_MANY_PROPERTIES,
			"properties has %d pairs, limit %d", n, lim.MaxProperties), nil
	}
	if p := checkTimestamp(ev, now, lim); p != nil {
		return p, nil
	}
	if n := proto.Size(ev); n > lim.MaxEventBytes {
		return reject(ingestv1.RejectReason_REJECT_REASON_EVENT_TOO_LARGE,
			"event is %d bytes encoded, limit %d", n, lim.MaxEventBytes), nil
	}
	return nil, nil
}

// rejectedEvent builds the verdict of the event at index i whose event_id is
// id. The echoed event_id is made valid UTF-8 (the response is marshaled with
// UTF-8 validation) and cut at maxEchoBytes so hostile input is not echoed at
// length.
func rejectedEvent(i int, id string, p *problem) *ingestv1.RejectedEvent {
	r := &ingestv1.RejectedEvent{
		Index:   int32(i),
		EventId: echo(id),
		Reason:  p.reason,
		Message: p.message,
	}
	if p.retryAfter > 0 {
		r.RetryAfter = durationpb.New(p.retryAfter)
	}
	return r
}

// maxEchoBytes bounds the event_id echoed in a verdict. Valid event_ids are at
// most 128 characters, so they are always echoed whole.
const maxEchoBytes = 1024

func echo(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxEchoBytes {
		return s
	}
	n := maxEchoBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// checkUTF8 rejects an event with a string field that is not valid UTF-8.
// The contract decodes these fields without validation so that such an event
// is rejected alone instead of failing its whole batch in the codec.
func checkUTF8(ev *ingestv1.Event) *problem {
	for _, f := range [...]struct{ name, value string }{
		{"event_id", ev.GetEventId()},
		{"type", ev.GetType()},
		{"user_id", ev.GetUserId()},
		{"session_id", ev.GetSessionId()},
	} {
		if !utf8.ValidString(f.value) {
			return reject(ingestv1.RejectReason_REJECT_REASON_INVALID_UTF8,
				"%s is not valid UTF-8 (invalid byte at offset %d)", f.name, invalidUTF8At(f.value))
		}
	}
	props := ev.GetProperties()
	bad := false
	for k, v := range props {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			bad = true
			break
		}
	}
	if !bad {
		return nil
	}
	// Name the same property every time: the smallest offending key.
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if !utf8.ValidString(k) {
			return reject(ingestv1.RejectReason_REJECT_REASON_INVALID_UTF8,
				"property key %s is not valid UTF-8 (invalid byte at offset %d)", quote(k), invalidUTF8At(k))
		}
		if v := props[k]; !utf8.ValidString(v) {
			return reject(ingestv1.RejectReason_REJECT_REASON_INVALID_UTF8,
				"property %s: value is not valid UTF-8 (invalid byte at offset %d)", quote(k), invalidUTF8At(v))
		}
	}
	return nil
}

func invalidUTF8At(s string) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// Validity range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// checkTimestamp rejects a timestamp outside the tenant's window
// [now-TimestampPastWindow, now+TimestampFutureWindow] or one that is not a
// valid google.protobuf.Timestamp. The rules already made sure it is present.
func checkTimestamp(ev *ingestv1.Event, now time.Time, lim *tenancy.Limits) *problem {
	past, future := lim.TimestampPastWindow, lim.TimestampFutureWindow
	ts := ev.GetTimestamp()
	switch sec, nanos := ts.GetSeconds(), ts.GetNanos(); {
	case sec < minTimestampSeconds:
		return reject(ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_OLD,
			"timestamp is before year 1 (seconds %d), limit %s in the past", sec, humanDuration(past))
	case sec > maxTimestampSeconds:
		return reject(ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_FAR_IN_FUTURE,
			"timestamp is after year 9999 (seconds %d), limit %s in the future", sec, humanDuration(future))
	case nanos < 0 || nanos > 999_999_999:
		// No better reason exists in v1: a timestamp that is not a valid
		// point in time is as good as missing.
		return reject(ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_MISSING,
			"timestamp is not a valid time: nanos is %d, must be 0 to 999999999", nanos)
	}
	t := ts.AsTime()
	if earliest := now.Add(-past); t.Before(earliest) {
		return reject(ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_OLD,
			"timestamp %s is %s in the past, limit %s", t.Format(time.RFC3339Nano), humanDuration(now.Sub(t)), humanDuration(past))
	}
	if latest := now.Add(future); t.After(latest) {
		return reject(ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_FAR_IN_FUTURE,
			"timestamp %s is %s in the future, limit %s", t.Format(time.RFC3339Nano), humanDuration(t.Sub(now)), humanDuration(future))
	}
	return nil
}

// humanDuration formats d for a message: whole days as "7 days", long spans
// in days with one decimal, shorter ones to the second.
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	case d >= 2*day:
		return fmt.Sprintf("%.1f days", float64(d)/float64(day))
	case d >= time.Second:
		return d.Round(time.Second).String()
	default:
		return d.String()
	}
}

// fieldReasons maps the Event fields that carry protovalidate rules to the
// reason of their violations. properties has three reasons; see describe.
var fieldReasons = map[string]ingestv1.RejectReason{
	"event_id":   ingestv1.RejectReason_REJECT_REASON_INVALID_EVENT_ID,
	"type":       ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE,
	"user_id":    ingestv1.RejectReason_REJECT_REASON_USER_ID_TOO_LONG,
	"session_id": ingestv1.RejectReason_REJECT_REASON_SESSION_ID_TOO_LONG,
	"timestamp":  ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_MISSING,
	"properties": ingestv1.RejectReason_REJECT_REASON_TOO_MANY_PROPERTIES,
	"value":      ingestv1.RejectReason_REJECT_REASON_NON_FINITE_VALUE,
}

// firstViolation picks the violation that decides the verdict, the same one
// every time: protovalidate reports map entries in random order, so order by
// field number, then the map itself before its entries, then by key, then a
// key's violation before its value's.
func firstViolation(vs []*protovalidate.Violation) *protovalidate.Violation {
	return slices.MinFunc(vs, func(a, b *protovalidate.Violation) int {
		ea, eb := firstElement(a), firstElement(b)
		return cmp.Or(
			cmp.Compare(ea.GetFieldNumber(), eb.GetFieldNumber()),
			compareBool(ea.HasSubscript(), eb.HasSubscript()),
			cmp.Compare(ea.GetStringKey(), eb.GetStringKey()),
			compareBool(!a.Proto.GetForKey(), !b.Proto.GetForKey()),
		)
	})
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

type fieldPathElement = interface {
	GetFieldNumber() int32
	GetFieldName() string
	HasSubscript() bool
	GetStringKey() string
}

func firstElement(v *protovalidate.Violation) fieldPathElement {
	if els := v.Proto.GetField().GetElements(); len(els) > 0 {
		return els[0]
	}
	return noElement{}
}

type noElement struct{}

func (noElement) GetFieldNumber() int32 { return 0 }
func (noElement) GetFieldName() string  { return "" }
func (noElement) HasSubscript() bool    { return false }
func (noElement) GetStringKey() string  { return "" }

// describe turns a violation of ev into a reason and a message that names the
// field and the limit.
func describe(ev *ingestv1.Event, v *protovalidate.Violation) *problem {
	el := firstElement(v)
	field := el.GetFieldName()
	rule := v.Proto.GetRuleId()
	limit := ruleLimit(v)
	reason, known := fieldReasons[field]
	if !known {
		// A rule added to the proto without a mapping here; a test guards
		// against it. Still a rejection, never a silent acceptance.
		return reject(ingestv1.RejectReason_REJECT_REASON_UNSPECIFIED, "%s: %s",
			protovalidate.FieldPathString(v.Proto.GetField()), v.Proto.GetMessage())
	}

	switch field {
	case "event_id":
		return describeString(reason, "event_id", ev.GetEventId(), rule, limit,
			"1-128 characters of [A-Za-z0-9._:-]", func(_ int, r rune) bool { return isIDRune(r) })
	case "type":
		return describeString(reason, "type", ev.GetType(), rule, limit,
			"1-64 characters: a letter, then letters, digits and _ . : -", isTypeRune)
	case "user_id":
		return describeString(reason, "user_id", ev.GetUserId(), rule, limit, "", nil)
	case "session_id":
		return describeString(reason, "session_id", ev.GetSessionId(), rule, limit, "", nil)
	case "timestamp":
		if rule == "required" {
			return reject(reason, "timestamp is missing; the event time is required")
		}
	case "value":
		if rule == "double.finite" {
			return reject(reason, "value is %s; it must be a finite number", formatFloat(ev.GetValue()))
		}
	case "properties":
		if !el.HasSubscript() {
			if rule == "map.max_pairs" {
				return reject(reason, "properties has %d pairs, limit %d", len(ev.GetProperties()), limit)
			}
			return reject(reason, "properties: %s", v.Proto.GetMessage())
		}
		key := el.GetStringKey()
		if v.Proto.GetForKey() {
			return describeString(ingestv1.RejectReason_REJECT_REASON_PROPERTY_KEY_INVALID, "property key "+quote(key), key, rule, limit,
				"1-64 characters of [A-Za-z0-9_.:-]", func(_ int, r rune) bool { return isKeyRune(r) })
		}
		return describeString(ingestv1.RejectReason_REJECT_REASON_PROPERTY_VALUE_TOO_LONG, "property "+quote(key)+": value", ev.GetProperties()[key], rule, limit, "", nil)
	}
	return reject(reason, "%s: %s", protovalidate.FieldPathString(v.Proto.GetField()), v.Proto.GetMessage())
}

// describeString writes the message for a string rule. subject names the
// field ("event_id", `property key "x"`); allowed describes valid values for
// the pattern and min_len rules; ok, for pattern rules, finds the first
// character that is not allowed.
func describeString(reason ingestv1.RejectReason, subject, value, rule string, limit uint64, allowed string, ok func(int, rune) bool) *problem {
	switch rule {
	case "string.min_len", "string.min_bytes":
		if value == "" {
			if allowed != "" {
				return reject(reason, "%s is empty; it must be %s", subject, allowed)
			}
			return reject(reason, "%s is empty", subject)
		}
		return reject(reason, "%s is %d characters, minimum %d", subject, utf8.RuneCountInString(value), limit)
	case "string.max_len":
		return reject(reason, "%s is %d characters, limit %d", subject, utf8.RuneCountInString(value), limit)
	case "string.max_bytes":
		return reject(reason, "%s is %d bytes, limit %d", subject, len(value), limit)
	case "string.pattern":
		if ok != nil {
			if i, r, found := firstDisallowed(value, ok); found {
				return reject(reason, "%s has %q at offset %d; it must be %s", subject, r, i, allowed)
			}
		}
		return reject(reason, "%s is malformed; it must be %s", subject, allowed)
	}
	return reject(reason, "%s: %s", subject, rule)
}

func firstDisallowed(s string, ok func(int, rune) bool) (int, rune, bool) {
	for i, r := range s {
		if !ok(i, r) {
			return i, r, true
		}
	}
	return 0, 0, false
}

func isAlpha(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

func isAlnum(r rune) bool { return isAlpha(r) || '0' <= r && r <= '9' }

// isIDRune: [A-Za-z0-9._:-], event_id's pattern.
func isIDRune(r rune) bool { return isAlnum(r) || strings.ContainsRune("._:-", r) }

// isKeyRune: [A-Za-z0-9_.:-], a property key's pattern.
func isKeyRune(r rune) bool { return isIDRune(r) }

// isTypeRune: ^[A-Za-z][A-Za-z0-9_.:-]*$, type's pattern.
func isTypeRune(i int, r rune) bool {
	if i == 0 {
		return isAlpha(r)
	}
	return isIDRune(r)
}

// ruleLimit returns the numeric value of the violated rule (a length or a
// count), or 0.
func ruleLimit(v *protovalidate.Violation) uint64 {
	if !v.RuleValue.IsValid() {
		return 0
	}
	switch x := v.RuleValue.Interface().(type) {
	case uint64:
		return x
	case uint32:
		return uint64(x)
	case int64:
		return uint64(max(x, 0))
	case int32:
		return uint64(max(x, 0))
	}
	return 0
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return fmt.Sprint(f)
}

// quote formats an untrusted string for a message: quoted (invalid UTF-8 is
// escaped, so the message stays valid) and cut short.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q… (%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}
