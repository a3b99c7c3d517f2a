package admin

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// invalidArgument returns an INVALID_ARGUMENT status error whose
// errdetails.BadRequest detail names field and says what is wrong with it.
// The message is worded like the validation interceptor's ("invalid request:
// field: what is wrong"), so clients see one style whichever layer refused.
// description must not echo secrets or unbounded client input.
func invalidArgument(field, description string) error {
	st := status.New(codes.InvalidArgument, "invalid request: "+field+": "+description)
	detailed, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       field,
			Description: description,
		}},
	})
	if err != nil {
		// WithDetails fails only for an OK status or an unmarshalable
		// detail, neither of which can happen here; the message alone
		// still names the field.
		return st.Err()
	}
	return detailed.Err()
}
