package rpcerror

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	err := InvalidArgument(Field("page_size", "must be at most 1000"), Field("page_token", "is not a token from this API"))
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Equal(t, "invalid request: page_size: must be at most 1000; page_token: is not a token from this API", st.Message())
	require.Len(t, st.Details(), 1)
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	require.True(t, ok)
	require.Len(t, br.GetFieldViolations(), 2)
	require.Equal(t, "page_token", br.GetFieldViolations()[1].GetField())
}
