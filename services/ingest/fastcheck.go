package ingest

import (
	"math"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// The limits of ingest.proto's Event rules, repeated here for plainValid.
// TestPlainValidMatchesProtovalidate and FuzzPlainValid keep the two in step.
const (
	eventIDMaxLen    = 128
	typeMaxLen       = 64
	idMaxBytes       = 256 // user_id, session_id
	propertiesMax    = 64
	propertyKeyMax   = 64
	propertyValueMax = 1024
)

// plainValid reports whether ev, whose strings are valid UTF-8, satisfies
// every protovalidate rule of Event. It is the fast path of check: the
// rules' CEL programs cost microseconds per event, which at hundreds of
// thousands of events per second is most of a core, while these loops over a
// few short ASCII strings cost tens of nanoseconds. When it returns false the
// protovalidate validator decides and explains, so a disagreement could only
// make a valid event slower, never let an invalid one through — and the tests
// assert that there is none.
func plainValid(ev *ingestv1.Event) bool {
	if !idLike(ev.GetEventId(), eventIDMaxLen) || !typeLike(ev.GetType()) {
		return false
	}
	if len(ev.GetUserId()) > idMaxBytes || len(ev.GetSessionId()) > idMaxBytes {
		return false
	}
	if ev.GetTimestamp() == nil {
		return false
	}
	if ev.Value != nil && (math.IsNaN(*ev.Value) || math.IsInf(*ev.Value, 0)) {
		return false
	}
	props := ev.GetProperties()
	if len(props) > propertiesMax {
		return false
	}
	for k, v := range props {
		if !idLike(k, propertyKeyMax) || len(v) > propertyValueMax {
			return false
		}
	}
	return true
}

// idLike reports whether s (a string, or bytes as received) is 1 to maxLen
// characters of [A-Za-z0-9._:-], the pattern of event_id and of property
// keys. The pattern is ASCII, so bytes and characters count the same.
func idLike[S ~string | ~[]byte](s S, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// typeLike reports whether s matches type's rules: ^[A-Za-z][A-Za-z0-9_.:-]*$
// and 1 to 64 characters.
func typeLike[S ~string | ~[]byte](s S) bool {
	if len(s) == 0 || len(s) > typeMaxLen {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// idByte[c] reports whether byte c is in [A-Za-z0-9._:-].
var idByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isIDRune(rune(c)) && c < 0x80
	}
	return t
}()
