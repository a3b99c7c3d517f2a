package admin

import (
	"slices"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func fuzzService(tb testing.TB) *Service {
	tb.Helper()
	v, err := protovalidate.New(protovalidate.WithMessages(&adminv1.TenantLimits{}))
	require.NoError(tb, err)
	return &Service{validator: v}
}

func limitsSeed(tb testing.TB, l *adminv1.TenantLimits) []byte {
	tb.Helper()
	b, err := proto.Marshal(l)
	require.NoError(tb, err)
	return b
}

// FuzzTenantUpdateMask parses arbitrary update masks (comma-separated paths)
// over arbitrary limits. Whatever it accepts names only known paths and, once
// applied, leaves limits that pass tenancy.Limits.Validate; whatever it
// refuses is INVALID_ARGUMENT. Nothing panics.
func FuzzTenantUpdateMask(f *testing.F) {
	s := fuzzService(f)
	f.Add("limits", limitsSeed(f, &adminv1.TenantLimits{KafkaShards: new(int32(3))}))
	f.Add("limits.events_per_second,display_name", limitsSeed(f, &adminv1.TenantLimits{EventsPerSecond: new(-1.0)}))
	f.Add("limits.timestamp_past_window", limitsSeed(f, &adminv1.TenantLimits{TimestampPastWindow: &durationpb.Duration{Seconds: -1}}))
	f.Add("limits.max_event_bytes,state", limitsSeed(f, &adminv1.TenantLimits{MaxEventBytes: new(int32(100))}))
	f.Add("limits.,limits.x.y,", []byte{})
	f.Add("limits.raw_retention,limits.rollup_retention", limitsSeed(f, &adminv1.TenantLimits{
		RawRetention: durationpb.New(400 * 24 * time.Hour), RollupRetention: durationpb.New(300 * 24 * time.Hour)}))
	allowed := updatablePaths()
	f.Fuzz(func(t *testing.T, mask string, limits []byte) {
		msg := &adminv1.TenantLimits{}
		if proto.Unmarshal(limits, msg) != nil {
			msg = nil
		}
		paths := strings.Split(mask, ",")
		in := &adminv1.Tenant{TenantId: "acme", State: adminv1.TenantState_TENANT_STATE_ACTIVE, Limits: msg}
		c, err := s.parseTenantChange(in, paths)
		if err != nil {
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			return
		}
		for _, p := range paths {
			require.Contains(t, allowed, p)
		}
		for _, name := range c.limitFields {
			require.Contains(t, allowed, pathLimits+"."+name)
		}
		tn := postgres.Tenant{ID: "acme", State: postgres.TenantActive}
		if err := c.apply(&tn); err != nil {
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			return
		}
		require.NoError(t, tn.Limits.Apply(tenancy.DefaultLimits()).Validate(), "accepted limits are valid")
	})
}

// FuzzLimitsConversion converts arbitrary TenantLimits to overrides and back:
// what converts without a problem comes back unchanged.
func FuzzLimitsConversion(f *testing.F) {
	f.Add(limitsSeed(f, &adminv1.TenantLimits{}))
	f.Add(limitsSeed(f, allLimits()))
	f.Add(limitsSeed(f, &adminv1.TenantLimits{TimestampFutureWindow: &durationpb.Duration{Seconds: 315576000000}}))
	f.Add(limitsSeed(f, &adminv1.TenantLimits{TimestampFutureWindow: &durationpb.Duration{Nanos: -1, Seconds: 2}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &adminv1.TenantLimits{}
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		msg.ProtoReflect().SetUnknown(nil)
		for _, d := range []*durationpb.Duration{msg.GetTimestampPastWindow(), msg.GetTimestampFutureWindow(),
			msg.GetRawRetention(), msg.GetRollupRetention()} {
			if d != nil {
				d.ProtoReflect().SetUnknown(nil)
			}
		}
		ov, bad := overridesFromProto(msg, "limits")
		if len(bad) > 0 {
			for _, v := range bad {
				require.True(t, strings.HasPrefix(v.GetField(), "limits."), v.GetField())
			}
			return
		}
		back := protoLimits(ov)
		require.True(t, proto.Equal(msg, back), "round trip\nin  %v\nout %v", msg, back)
	})
}

func allLimits() *adminv1.TenantLimits {
	return &adminv1.TenantLimits{
		EventsPerSecond:        new(1.5),
		EventsBurst:            new(int64(2)),
		RequestsPerSecond:      new(3.5),
		MaxBatchEvents:         new(int32(4)),
		MaxEventBytes:          new(int32(500)),
		MaxProperties:          new(int32(6)),
		TimestampPastWindow:    durationpb.New(7e9),
		TimestampFutureWindow:  durationpb.New(8e9),
		MonthlyEventQuota:      new(int64(9)),
		MonthlyEventQuotaSoft:  new(int64(10)),
		QueryRequestsPerSecond: new(11.5),
		KafkaShards:            new(int32(12)),
		RawRetention:           durationpb.New(13 * 24 * time.Hour),
		RollupRetention:        durationpb.New(14 * 24 * time.Hour),
	}
}

// Every TenantLimits field has a limit behind it, in each conversion: a field
// added to the proto fails here until the conversions know it.
func TestLimitFieldsCovered(t *testing.T) {
	t.Parallel()
	all := allLimits()
	fields := limitFields()
	for i := range fields.Len() {
		require.True(t, all.ProtoReflect().Has(fields.Get(i)), "allLimits sets %s", fields.Get(i).Name())
	}
	ov, bad := overridesFromProto(all, "limits")
	require.Empty(t, bad)
	require.True(t, proto.Equal(all, protoLimits(ov)))
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		var one tenancy.LimitOverrides
		require.True(t, copyLimit(&one, ov, name), "copyLimit knows %s", name)
		require.NotEqual(t, tenancy.LimitOverrides{}, one, "copyLimit copies %s", name)
		// Only that field: converting back sets exactly one proto field.
		var set []string
		protoLimits(one).ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			set = append(set, string(fd.Name()))
			return true
		})
		require.Equal(t, []string{name}, set)
	}
	require.False(t, copyLimit(&tenancy.LimitOverrides{}, ov, "nope"))
	require.True(t, slices.Contains(updatablePaths(), "limits.kafka_shards"))
}
