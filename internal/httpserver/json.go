package httpserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
)

// jsonMarshaler is the gateway's JSON codec: proto field names (snake_case) and enum value
// names, default values written out (so "accepted":0 is explicit), unknown fields refused, and
// decode errors rewritten so that they name the field as the client spells it.
type jsonMarshaler struct {
	*runtime.JSONPb
}

func newJSONMarshaler() jsonMarshaler {
	return jsonMarshaler{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Unmarshal decodes data into v with client-facing errors.
func (m jsonMarshaler) Unmarshal(data []byte, v any) error {
	return bodyError(m.JSONPb.Unmarshal(data, v))
}

// NewDecoder returns a decoder whose errors are client-facing.
func (m jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	d := m.JSONPb.NewDecoder(r)
	return runtime.DecoderFunc(func(v any) error { return bodyError(d.Decode(v)) })
}

var (
	protoPrefix = regexp.MustCompile(`^proto:\s*`)
	fieldName   = regexp.MustCompile(`(field|name) "?([a-z]+[A-Za-z0-9]*)"?`)
	upper       = regexp.MustCompile(`[A-Z]`)
)

// bodyError turns a protojson error into a message that says what is wrong with the body in
// the client's terms. io.EOF (an empty body) passes through: the gateway treats it specially.
func bodyError(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("request body larger than %d bytes", mbe.Limit)
	}
	msg := protoPrefix.ReplaceAllString(strings.ReplaceAll(err.Error(), "\u00a0", " "), "")
	msg = fieldName.ReplaceAllStringFunc(msg, func(s string) string {
		return upper.ReplaceAllStringFunc(s, func(c string) string { return "_" + strings.ToLower(c) })
	})
	return fmt.Errorf("invalid JSON body: %s", msg)
}
