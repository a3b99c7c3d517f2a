package admin

import "github.com/abacus-analytics/abacus/internal/rpcerror"

// invalidArgument returns the INVALID_ARGUMENT status naming field and what is wrong with it,
// worded like the validation interceptor's. description must not echo secrets or unbounded
// client input.
func invalidArgument(field, description string) error {
	return rpcerror.InvalidArgument(rpcerror.Field(field, description))
}
