// Package rpcerror builds the client-facing gRPC statuses that handlers and interceptors return
// directly, so every layer that refuses a request words the refusal the same way.
package rpcerror

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Field names one problem with a request: the field (a path such as "events[3].type" or
// "page_token") and what is wrong with it. The description must not echo secrets or unbounded
// client input.
func Field(field, description string) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: description}
}

// InvalidArgument is the INVALID_ARGUMENT status used for every bad request (HTTP 400 through
// the gateway): the message reads "invalid request: field: what is wrong; …" and a BadRequest
// detail carries the same violations for programs.
func InvalidArgument(violations ...*errdetails.BadRequest_FieldViolation) error {
	parts := make([]string, len(violations))
	for i, v := range violations {
		parts[i] = v.GetField() + ": " + v.GetDescription()
	}
	st := status.New(codes.InvalidArgument, "invalid request: "+strings.Join(parts, "; "))
	// WithDetails fails only for an OK status or an unmarshalable detail; the message alone
	// still names every field.
	if ds, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: violations}); err == nil {
		return ds.Err()
	}
	return st.Err()
}
