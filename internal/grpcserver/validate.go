package grpcserver

import (
	"context"
	"errors"
	"fmt"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/abacus-analytics/abacus/internal/rpcerror"
)

// validator checks requests against the protovalidate rules declared in the .proto files and
// answers INVALID_ARGUMENT with a BadRequest detail that names every offending field.
type validator struct {
	v protovalidate.Validator
	// skip lists request messages whose handler validates them itself (IngestStream batches are
	// answered with per-event verdicts instead of ending the stream).
	skip map[protoreflect.FullName]bool
}

func (val *validator) check(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "unsupported message type %T", m)
	}
	if val.skip[msg.ProtoReflect().Descriptor().FullName()] {
		return nil
	}
	err := val.v.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("validate %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return rpcerror.InvalidArgument(violations(verr)...)
}

func violations(verr *protovalidate.ValidationError) []*errdetails.BadRequest_FieldViolation {
	out := make([]*errdetails.BadRequest_FieldViolation, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		out = append(out, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
			Reason:      v.Proto.GetRuleId(),
		})
	}
	return out
}

func (val *validator) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := val.check(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (val *validator) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{ServerStream: ss, val: val})
	}
}

type validatingStream struct {
	grpc.ServerStream
	val *validator
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.val.check(m)
}
