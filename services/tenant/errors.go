package tenant

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ErrorDomain is the domain of the ErrorInfo details this package attaches.
const ErrorDomain = "abacus.dev"

// ReasonUsageUnavailable is the ErrorInfo reason of the UNAVAILABLE answer
// given when the usage counter cannot be read; clients retry with backoff.
const ReasonUsageUnavailable = "USAGE_UNAVAILABLE"

// usageRetryDelay is the RetryInfo delay suggested with
// ReasonUsageUnavailable.
const usageRetryDelay = time.Second

// usageError turns a failure to read the usage counter into the status the
// client sees: the request's own end when that is what failed, otherwise
// UNAVAILABLE. The cause is logged by the caller, never sent.
func usageError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	st := status.New(codes.Unavailable, "usage cannot be read right now; retry with backoff")
	ds, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonUsageUnavailable, Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(usageRetryDelay)},
	)
	if err != nil {
		return st.Err()
	}
	return ds.Err()
}
