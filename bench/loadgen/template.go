package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of ingest.proto that the encoder writes by hand. The unit tests decode its
// output with the generated code, so a drift from the contract fails them.
const (
	fieldRequestSequence = 1 // IngestStreamRequest.sequence
	fieldRequestEvents   = 2 // IngestStreamRequest.events

	fieldEventID         = 1
	fieldEventType       = 2
	fieldEventUserID     = 3
	fieldEventSessionID  = 4
	fieldEventTimestamp  = 5
	fieldEventProperties = 6
	fieldEventValue      = 7

	fieldTimestampSeconds = 1
	fieldMapKey           = 1
	fieldMapValue         = 2
)

const (
	hexDigits = "0123456789abcdef"
	// tenantDigits and counterDigits are the hex digits of an event id after the run id:
	// "<run>-<tenant>-<counter>".
	tenantDigits  = 4
	counterDigits = 16
	// userDigits is the number of decimal digits of a user_id after "user-".
	userDigits = 8
	// secondsBytes is the width of a timestamp's seconds varint: enough until the year 3058.
	secondsBytes = 5
	maxSeconds   = 1<<(7*secondsBytes) - 1
)

// batchTemplate is one pre-encoded IngestStreamRequest. Its events are encoded once; before
// each send only fixed-width parts are overwritten in place (the tenant and counter digits of
// every event_id, every timestamp's seconds, every user_id's digits), and the trailing sequence
// field is written again. The events part keeps its length, so no offset ever moves.
type batchTemplate struct {
	buf     []byte  // the events, then the sequence field
	body    int     // length of the events part
	idOff   []int32 // per event: offset of the tenant digits in event_id
	tsOff   []int32 // per event: offset of the 5-byte seconds varint
	userOff []int32 // per event: offset of the user_id digits
}

// newBatchTemplate encodes n events of the generated mix for run runID. Their ids, timestamps
// and users are placeholders until [batchTemplate.rewrite].
func newBatchTemplate(rng *rand.Rand, runID string, n int) *batchTemplate {
	t := &batchTemplate{
		idOff:   make([]int32, n),
		tsOff:   make([]int32, n),
		userOff: make([]int32, n),
	}
	buf := make([]byte, 0, n*approxEventBytes+16)
	var ev []byte
	for i := range n {
		spec := randomEvent(rng)
		var idOff, tsOff, userOff int
		ev, idOff, tsOff, userOff = encodeEvent(ev[:0], runID, spec)
		buf = protowire.AppendTag(buf, fieldRequestEvents, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(len(ev)))
		base := len(buf)
		buf = append(buf, ev...)
		t.idOff[i] = int32(base + idOff)
		t.tsOff[i] = int32(base + tsOff)
		t.userOff[i] = int32(base + userOff)
	}
	t.body = len(buf)
	t.buf = buf
	return t
}

// events is the number of events in the batch.
func (t *batchTemplate) events() int { return len(t.idOff) }

// rewrite prepares the batch for one send: event i gets the id counter ids[i] of tenant, the
// event time sec (Unix seconds, 0 to 2^35-1), a user drawn uniformly from users, and the batch
// gets sequence seq. It returns the bytes to send, valid until the next rewrite.
func (t *batchTemplate) rewrite(tenant int, ids []uint64, sec int64, rng *rand.Rand, users int, seq uint64) []byte {
	b := t.buf[:t.body]
	var tenantHex [tenantDigits]byte
	for d := range tenantDigits {
		tenantHex[d] = hexDigits[(tenant>>(4*(tenantDigits-1-d)))&0xf]
	}
	var secs [secondsBytes]byte
	putPaddedVarint(secs[:], uint64(sec))
	for i, off := range t.idOff {
		p := b[off : off+tenantDigits+1+counterDigits]
		copy(p, tenantHex[:])
		c := ids[i]
		for d := counterDigits - 1; d >= 0; d-- {
			p[tenantDigits+1+d] = hexDigits[c&0xf]
			c >>= 4
		}
		copy(b[t.tsOff[i]:], secs[:])
		u := uint32(rng.IntN(users))
		q := b[t.userOff[i] : t.userOff[i]+userDigits]
		for d := userDigits - 1; d >= 0; d-- {
			q[d] = byte('0' + u%10)
			u /= 10
		}
	}
	b = protowire.AppendTag(b, fieldRequestSequence, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	t.buf = b
	return b
}

// detach gives the template a copy of its buffer, leaving the old one to whoever still holds
// it.
func (t *batchTemplate) detach() { t.buf = slices.Clone(t.buf) }

// putPaddedVarint writes v < 2^35 as a varint of exactly len(b) = 5 bytes. Values that need
// fewer bytes get redundant continuation bytes, which every protobuf decoder accepts.
func putPaddedVarint(b []byte, v uint64) {
	for i := range len(b) - 1 {
		b[i] = byte(v&0x7f) | 0x80
		v >>= 7
	}
	b[len(b)-1] = byte(v & 0x7f)
}

// eventSpec is one generated event before encoding.
type eventSpec struct {
	typ      string
	session  string
	props    [][2]string // key, value, in the order drawn
	value    float64
	hasValue bool
}

// encodeEvent appends the encoding of an Event to dst and returns where the fixed-width
// placeholders are: the tenant digits of the event_id, the seconds varint and the user digits.
func encodeEvent(dst []byte, runID string, e eventSpec) (out []byte, idOff, tsOff, userOff int) {
	idLen := len(runID) + 1 + tenantDigits + 1 + counterDigits
	dst = protowire.AppendTag(dst, fieldEventID, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(idLen))
	dst = append(dst, runID...)
	dst = append(dst, '-')
	idOff = len(dst)
	dst = append(dst, "0000-0000000000000000"...)

	dst = protowire.AppendTag(dst, fieldEventType, protowire.BytesType)
	dst = protowire.AppendString(dst, e.typ)

	dst = protowire.AppendTag(dst, fieldEventUserID, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(len("user-")+userDigits))
	dst = append(dst, "user-"...)
	userOff = len(dst)
	dst = append(dst, "00000000"...)

	dst = protowire.AppendTag(dst, fieldEventSessionID, protowire.BytesType)
	dst = protowire.AppendString(dst, e.session)

	dst = protowire.AppendTag(dst, fieldEventTimestamp, protowire.BytesType)
	dst = protowire.AppendVarint(dst, 1+secondsBytes)
	dst = protowire.AppendTag(dst, fieldTimestampSeconds, protowire.VarintType)
	tsOff = len(dst)
	dst = append(dst, make([]byte, secondsBytes)...)
	putPaddedVarint(dst[tsOff:], 0)

	for _, kv := range e.props {
		entry := 1 + protowire.SizeBytes(len(kv[0])) + 1 + protowire.SizeBytes(len(kv[1]))
		dst = protowire.AppendTag(dst, fieldEventProperties, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(entry))
		dst = protowire.AppendTag(dst, fieldMapKey, protowire.BytesType)
		dst = protowire.AppendString(dst, kv[0])
		dst = protowire.AppendTag(dst, fieldMapValue, protowire.BytesType)
		dst = protowire.AppendString(dst, kv[1])
	}
	if e.hasValue {
		dst = protowire.AppendTag(dst, fieldEventValue, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, math.Float64bits(e.value))
	}
	return dst, idOff, tsOff, userOff
}

// The vocabulary of the generated events: a small set of types, each with the properties a
// product would attach to it.
var (
	paths      = []string{"/", "/pricing", "/docs/getting-started", "/blog/realtime-analytics", "/products/4711", "/products/1337", "/cart", "/checkout", "/account/settings", "/search"}
	referrers  = []string{"https://www.google.com/", "https://news.ycombinator.com/", "https://twitter.com/", "direct", "https://www.bing.com/", "https://duckduckgo.com/"}
	browsers   = []string{"chrome", "firefox", "safari", "edge", "samsung-internet"}
	countries  = []string{"US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "NL", "SE"}
	devices    = []string{"desktop", "mobile", "tablet"}
	elements   = []string{"signup-button", "nav-pricing", "add-to-cart", "hero-cta", "footer-docs", "search-box"}
	queries    = []string{"pricing", "api key", "retention", "funnel analysis", "export csv", "sso"}
	plans      = []string{"free", "starter", "pro", "enterprise"}
	sources    = []string{"organic", "ads", "referral", "newsletter"}
	currencies = []string{"USD", "EUR", "GBP", "JPY"}
	errCodes   = []string{"E_TIMEOUT", "E_NETWORK", "E_VALIDATION", "E_INTERNAL"}
	errMsgs    = []string{"request timed out after 30s", "connection reset by peer", "field email is invalid", "unexpected server response"}
	versions   = []string{"3.14.2", "3.15.0", "3.15.1", "4.0.0-beta.2"}
)

func pick(rng *rand.Rand, s []string) string { return s[rng.IntN(len(s))] }

// randomEvent draws one event of the mix: type by weight, 3 to 5 properties, and a value on
// purchases and on some page views.
func randomEvent(rng *rand.Rand) eventSpec {
	e := eventSpec{session: fmt.Sprintf("sess-%016x", rng.Uint64())}
	r := rng.IntN(100)
	switch {
	case r < 45:
		e.typ = "page_view"
		e.props = [][2]string{{"path", pick(rng, paths)}, {"referrer", pick(rng, referrers)}, {"browser", pick(rng, browsers)}}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"country", pick(rng, countries)})
		}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"device", pick(rng, devices)})
		}
		if rng.IntN(3) == 0 {
			e.value, e.hasValue = float64(50+rng.IntN(3000)), true // load time, ms
		}
	case r < 65:
		e.typ = "click"
		e.props = [][2]string{{"element", pick(rng, elements)}, {"path", pick(rng, paths)}, {"browser", pick(rng, browsers)}}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"country", pick(rng, countries)})
		}
	case r < 75:
		e.typ = "search"
		e.props = [][2]string{{"query", pick(rng, queries)}, {"results", strconv.Itoa(rng.IntN(200))}, {"country", pick(rng, countries)}}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"browser", pick(rng, browsers)})
		}
	case r < 80:
		e.typ = "signup"
		e.props = [][2]string{{"plan", pick(rng, plans)}, {"source", pick(rng, sources)}, {"country", pick(rng, countries)}, {"device", pick(rng, devices)}}
	case r < 90:
		e.typ = "checkout.completed"
		e.props = [][2]string{{"currency", pick(rng, currencies)}, {"plan", pick(rng, plans)}, {"items", strconv.Itoa(1 + rng.IntN(9))}}
		if rng.IntN(3) == 0 {
			e.props = append(e.props, [2]string{"coupon", "SPRING25"})
		}
		e.value, e.hasValue = float64(rng.IntN(50000))/100+1, true // amount
	default:
		e.typ = "app.error"
		e.props = [][2]string{{"code", pick(rng, errCodes)}, {"message", pick(rng, errMsgs)}, {"path", pick(rng, paths)}}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"app_version", pick(rng, versions)})
		}
		if rng.IntN(2) == 0 {
			e.props = append(e.props, [2]string{"browser", pick(rng, browsers)})
		}
	}
	return e
}
