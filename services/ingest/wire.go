package ingest

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// IngestStream batches are judged as they arrived, in their protobuf
// encoding, rather than decoded into Go values: decoding an event (its
// properties map above all) and encoding it again for the event log is most
// of the CPU an ingest node would spend, while scanning the encoding checks
// the same rules in a fraction of the time and lets the event's own bytes go
// to Kafka (see eventlog.EncodedEvent).
//
// The scan is only a fast path. It accepts an event when it is certain that
// the decoded event would pass every check: every field at most once, no
// unknown fields, every rule and limit met. Anything else — a rejection, a
// repeated field, an unknown field, a map entry without its key or value —
// goes to the slow path, which decodes that one event and judges it exactly
// as unary Ingest does, so verdicts and messages are the same on both paths
// (FuzzJudgeWire checks this against the decoded path).

// Field numbers of abacus.ingest.v1.IngestStreamRequest, Event and
// google.protobuf.Timestamp.
const (
	streamSequenceField = 1
	streamEventsField   = 2

	eventIDField         = 1
	eventTypeField       = 2
	eventUserField       = 3
	eventSessionField    = 4
	eventTimestampField  = 5
	eventPropertiesField = 6
	eventValueField      = 7

	timestampSecondsField = 1
	timestampNanosField   = 2
)

// errMalformed is a request whose encoding cannot be decoded at all; the
// standard decoder would fail it the same way.
var errMalformed = errors.New("malformed request: not a valid protobuf encoding of abacus.ingest.v1.IngestStreamRequest")

// parseStreamRequest splits an encoded IngestStreamRequest into its sequence
// and the encodings of its events, without copying them. Fields it does not
// know, or with another wire type than the contract's, are skipped as the
// standard decoder would keep them as unknown fields.
func parseStreamRequest(b []byte) (seq uint64, events [][]byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, errMalformed
		}
		b = b[n:]
		switch {
		case num == streamSequenceField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, nil, errMalformed
			}
			seq, b = v, b[n:]
		case num == streamEventsField && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, nil, errMalformed
			}
			events, b = append(events, v), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, nil, errMalformed
			}
			b = b[n:]
		}
	}
	return seq, events, nil
}

// judgeWire gives every event of a batch, as received, exactly one verdict
// under the tenant's limits lim. Accepted events keep their encoding. It
// fails with errMalformed when an event cannot be decoded, and otherwise only
// when the validator fails (a server bug).
func (s *Service) judgeWire(events [][]byte, now time.Time, lim *tenancy.Limits) (verdicts, error) {
	v := verdicts{accepted: make([]acceptedEvent, 0, len(events))}
	var tooMany *problem
	for i, raw := range events {
		if i >= lim.MaxBatchEvents {
			if tooMany == nil {
				tooMany = batchTooLarge(len(events), lim)
			}
			v.rejected = append(v.rejected, rejectedEvent(i, string(wireEventID(raw)), tooMany))
			continue
		}
		if id, key, ok := scanEvent(raw, now, lim); ok {
			v.accepted = append(v.accepted, acceptedEvent{
				index:        int32(i),
				id:           id,
				EncodedEvent: eventlog.EncodedEvent{Data: raw, ShardKey: key},
			})
			continue
		}
		ev := new(ingestv1.Event)
		if err := proto.Unmarshal(raw, ev); err != nil {
			return verdicts{}, fmt.Errorf("%w: events[%d]: %v", errMalformed, i, err)
		}
		// Judged as unary Ingest judges it. If valid, it was written
		// unusually (repeated or unknown fields, say): its own bytes may be
		// larger than the limit the decoded event meets, so the canonical
		// encoding is written instead.
		if err := s.judgeDecoded(&v, i, ev, now, lim); err != nil {
			return verdicts{}, err
		}
	}
	return v, nil
}

// Bits of scanEvent's seen set.
const (
	seenID = 1 << iota
	seenType
	seenUser
	seenSession
	seenTimestamp
	seenValue
)

// scanEvent reports whether the encoded event b certainly passes every check
// of [Service.check] under lim, and returns its event_id and shard key (views
// into b). It never allocates. False means "not certain": the slow path
// decides.
func scanEvent(b []byte, now time.Time, lim *tenancy.Limits) (id, key []byte, ok bool) {
	if len(b) > lim.MaxEventBytes {
		// The canonical encoding is never longer than one that passes this
		// scan (no repeated or unknown fields), but may be shorter.
		return nil, nil, false
	}
	var (
		seen   uint
		user   []byte
		sec    int64
		nanos  int32
		nprops int
	)
	once := func(bit uint) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		b = b[n:]
		if num == eventValueField {
			if typ != protowire.Fixed64Type || !once(seenValue) {
				return nil, nil, false
			}
			bits, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return nil, nil, false
			}
			if f := math.Float64frombits(bits); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, nil, false
			}
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return nil, nil, false
		}
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, false
		}
		b = b[n:]
		switch num {
		case eventIDField:
			if !once(seenID) || !idLike(val, eventIDMaxLen) {
				return nil, nil, false
			}
			id = val
		case eventTypeField:
			if !once(seenType) || !typeLike(val) {
				return nil, nil, false
			}
		case eventUserField:
			if !once(seenUser) || len(val) > idMaxBytes || !utf8.Valid(val) {
				return nil, nil, false
			}
			user = val
		case eventSessionField:
			if !once(seenSession) || len(val) > idMaxBytes || !utf8.Valid(val) {
				return nil, nil, false
			}
		case eventTimestampField:
			if !once(seenTimestamp) {
				return nil, nil, false
			}
			var tsOK bool
			if sec, nanos, tsOK = scanTimestamp(val); !tsOK {
				return nil, nil, false
			}
		case eventPropertiesField:
			nprops++
			if nprops > lim.MaxProperties || !scanProperty(val) {
				return nil, nil, false
			}
		default:
			return nil, nil, false
		}
	}
	const required = seenID | seenType | seenTimestamp
	if seen&required != required || !timestampInWindow(sec, nanos, now, lim) {
		return nil, nil, false
	}
	if len(user) > 0 {
		return id, user, true
	}
	return id, id, true
}

// scanTimestamp decodes a google.protobuf.Timestamp with each field at most
// once and no others.
func scanTimestamp(b []byte) (sec int64, nanos int32, ok bool) {
	var seen uint
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType || (num != timestampSecondsField && num != timestampNanosField) {
			return 0, 0, false
		}
		b = b[n:]
		v, n := protowire.ConsumeVarint(b)
		if n < 0 || seen&(1<<num) != 0 {
			return 0, 0, false
		}
		seen |= 1 << num
		b = b[n:]
		if num == timestampSecondsField {
			sec = int64(v)
		} else {
			nanos = int32(v)
		}
	}
	return sec, nanos, true
}

// scanProperty checks one properties map entry: a key and a value, each
// exactly once, within the rules.
func scanProperty(b []byte) bool {
	var seen uint
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num == 1 && !idLike(v, propertyKeyMax) {
			return false
		}
		if num == 2 && (len(v) > propertyValueMax || !utf8.Valid(v)) {
			return false
		}
	}
	return seen == 1<<1|1<<2
}

// timestampInWindow reports whether the time sec, nanos is a valid
// google.protobuf.Timestamp inside the tenant's window around now, exactly as
// checkTimestamp judges it.
func timestampInWindow(sec int64, nanos int32, now time.Time, lim *tenancy.Limits) bool {
	if sec < minTimestampSeconds || sec > maxTimestampSeconds || nanos < 0 || nanos > 999_999_999 {
		return false
	}
	t := time.Unix(sec, int64(nanos))
	return !t.Before(now.Add(-lim.TimestampPastWindow)) && !t.After(now.Add(lim.TimestampFutureWindow))
}

// wireEventID returns the last event_id field of an encoded event, for the
// verdict of an event that is not otherwise looked at; nil when there is
// none or the encoding is broken.
func wireEventID(b []byte) []byte {
	var id []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return id
		}
		b = b[n:]
		if num == eventIDField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return id
			}
			id, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return id
		}
		b = b[n:]
	}
	return id
}
