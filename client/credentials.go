package client

import "context"

// bearer sends the API key as `authorization: Bearer <key>` metadata on every
// call. It has no exported fields and its String hides the key, so printing
// it cannot leak the key.
type bearer struct {
	header string
	secure bool
}

func newBearer(apiKey string, secure bool) bearer {
	return bearer{header: "Bearer " + apiKey, secure: secure}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the key
// is only sent over TLS unless Config.Insecure asked otherwise.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// String hides the key.
func (b bearer) String() string { return "Bearer <redacted>" }
