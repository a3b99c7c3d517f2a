package query

import (
	"context"
	"errors"

	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/internal/rpcerror"
)

// invalidArgument returns the INVALID_ARGUMENT status naming field and what is wrong with it,
// worded like the validation interceptor's. description must not echo secrets or unbounded
// client input.
func invalidArgument(field, description string) error {
	return rpcerror.InvalidArgument(rpcerror.Field(field, description))
}

// endOfStream is what a stream handler returns once its context is done: nil
// when the client went away (there is nobody to tell), otherwise the status
// of the context's error (a deadline).
func endOfStream(ctx context.Context) error {
	err := ctx.Err()
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return status.FromContextError(err).Err()
}
