package ingest

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

func eventValidator(t testing.TB) protovalidate.Validator {
	t.Helper()
	v, err := protovalidate.New(protovalidate.WithMessages(&ingestv1.Event{}))
	require.NoError(t, err)
	return v
}

// TestPlainValidMatchesProtovalidate checks the fast path against the rules
// of ingest.proto at and around every limit.
func TestPlainValidMatchesProtovalidate(t *testing.T) {
	t.Parallel()
	val := eventValidator(t)
	base := func() *ingestv1.Event {
		return &ingestv1.Event{EventId: "e-1", Type: "page_view", Timestamp: timestamppb.Now()}
	}
	nan, inf, one := math.NaN(), math.Inf(1), 1.0
	cases := map[string]func(*ingestv1.Event){
		"valid":                  func(*ingestv1.Event) {},
		"id 128":                 func(e *ingestv1.Event) { e.EventId = strings.Repeat("a", 128) },
		"id 129":                 func(e *ingestv1.Event) { e.EventId = strings.Repeat("a", 129) },
		"id empty":               func(e *ingestv1.Event) { e.EventId = "" },
		"id space":               func(e *ingestv1.Event) { e.EventId = "a b" },
		"id all allowed":         func(e *ingestv1.Event) { e.EventId = "AZaz09._:-" },
		"id non-ascii":           func(e *ingestv1.Event) { e.EventId = "é" },
		"id slash":               func(e *ingestv1.Event) { e.EventId = "a/b" },
		"type 64":                func(e *ingestv1.Event) { e.Type = "t" + strings.Repeat("x", 63) },
		"type 65":                func(e *ingestv1.Event) { e.Type = "t" + strings.Repeat("x", 64) },
		"type digit first":       func(e *ingestv1.Event) { e.Type = "1x" },
		"type dash first":        func(e *ingestv1.Event) { e.Type = "-x" },
		"type empty":             func(e *ingestv1.Event) { e.Type = "" },
		"type all allowed":       func(e *ingestv1.Event) { e.Type = "a_.:-Z9" },
		"user 256 bytes":         func(e *ingestv1.Event) { e.UserId = strings.Repeat("é", 128) },
		"user 257 bytes":         func(e *ingestv1.Event) { e.UserId = strings.Repeat("é", 128) + "x" },
		"session 257 bytes":      func(e *ingestv1.Event) { e.SessionId = strings.Repeat("s", 257) },
		"no timestamp":           func(e *ingestv1.Event) { e.Timestamp = nil },
		"value NaN":              func(e *ingestv1.Event) { e.Value = &nan },
		"value Inf":              func(e *ingestv1.Event) { e.Value = &inf },
		"value finite":           func(e *ingestv1.Event) { e.Value = &one },
		"64 properties":          func(e *ingestv1.Event) { e.Properties = props(64, "k", "v") },
		"65 properties":          func(e *ingestv1.Event) { e.Properties = props(65, "k", "v") },
		"key 64":                 func(e *ingestv1.Event) { e.Properties = props(1, strings.Repeat("k", 63), "v") },
		"key 65":                 func(e *ingestv1.Event) { e.Properties = props(1, strings.Repeat("k", 64), "v") },
		"key empty":              func(e *ingestv1.Event) { e.Properties = map[string]string{"": "v"} },
		"key space":              func(e *ingestv1.Event) { e.Properties = map[string]string{"a b": "v"} },
		"value 1024 bytes":       func(e *ingestv1.Event) { e.Properties = map[string]string{"k": strings.Repeat("v", 1024)} },
		"value 1025 bytes":       func(e *ingestv1.Event) { e.Properties = map[string]string{"k": strings.Repeat("v", 1025)} },
		"value multibyte 1024":   func(e *ingestv1.Event) { e.Properties = map[string]string{"k": strings.Repeat("é", 512)} },
		"empty property value":   func(e *ingestv1.Event) { e.Properties = map[string]string{"k": ""} },
		"key with colon and dot": func(e *ingestv1.Event) { e.Properties = map[string]string{"a.b:c-d_e": "v"} },
	}
	for name, edit := range cases {
		ev := base()
		edit(ev)
		require.Equal(t, val.Validate(ev) == nil, plainValid(ev), name)
	}
}

// props returns n properties whose keys start with prefix (one more byte is
// appended when n > 1).
func props(n int, prefix, value string) map[string]string {
	m := make(map[string]string, n)
	if n == 1 {
		m[prefix+"0"] = value
		return m
	}
	for i := range n {
		m[prefix+string(rune('a'+i%26))+string(rune('0'+i/26))] = value
	}
	return m
}

// FuzzPlainValid: for any event with valid UTF-8 strings, the fast path and
// protovalidate agree.
func FuzzPlainValid(f *testing.F) {
	f.Add("evt-1", "page_view", "u", "s", true, "plan", "pro", uint8(1), 1.5, true)
	f.Add("", "", "", "", false, "", "", uint8(0), 0.0, false)
	f.Add("a b", "1x", "é", "s", true, "k k", "v", uint8(70), math.NaN(), true)
	f.Add(strings.Repeat("a", 128), "T"+strings.Repeat("_", 63), strings.Repeat("u", 256), "", true, strings.Repeat("k", 64), strings.Repeat("v", 1024), uint8(64), math.Inf(-1), true)
	val := eventValidator(f)
	f.Fuzz(func(t *testing.T, id, typ, user, session string, hasTS bool, key, value string, nProps uint8, num float64, hasNum bool) {
		ev := &ingestv1.Event{EventId: id, Type: typ, UserId: user, SessionId: session}
		if hasTS {
			ev.Timestamp = timestamppb.Now()
		}
		if nProps > 0 {
			ev.Properties = map[string]string{key: value}
			for i := range int(nProps) - 1 {
				ev.Properties[key+string(rune('a'+i%26))+string(rune('0'+i/26))] = value
			}
		}
		if hasNum {
			ev.Value = &num
		}
		if checkUTF8(ev) != nil {
			// Rejected before either check runs.
			for _, s := range []string{id, typ, user, session, key, value} {
				if !utf8.ValidString(s) {
					return
				}
			}
			t.Fatal("checkUTF8 rejected valid UTF-8")
		}
		require.Equal(t, val.Validate(ev) == nil, plainValid(ev))
	})
}
