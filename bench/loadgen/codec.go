package loadgen

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// rawBatch is an IngestStreamRequest that is already encoded.
type rawBatch []byte

// rawCodec sends a rawBatch as it is and (un)marshals every other message with gRPC's proto
// codec, so responses are decoded normally. Its name is "proto": the server sees an ordinary
// application/grpc+proto call and decodes the batch with its usual codec.
//
// The bytes of a rawBatch are handed to the transport without a copy and may be written to
// the connection after SendMsg returns; the caller must not change them until the server has
// answered the batch.
type rawCodec struct{ proto encoding.CodecV2 }

var _ encoding.CodecV2 = rawCodec{}

func newRawCodec() rawCodec {
	return rawCodec{proto: encoding.GetCodecV2(proto.Name)}
}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawBatch); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	out, err := c.proto.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("loadgen: marshal: %w", err)
	}
	return out, nil
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.proto.Unmarshal(data, v); err != nil {
		return fmt.Errorf("loadgen: unmarshal: %w", err)
	}
	return nil
}

func (rawCodec) Name() string { return proto.Name }
