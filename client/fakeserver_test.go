package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

const testKey = "abk_0123456789abcdefSECRETsecretSECRETsecret0123456789ab"

// call is one batch as the fake server received it.
type call struct {
	stream int // 1 for the first stream the server saw
	n      int // 1 for the first batch of its stream
	seq    uint64
	events []*ingestv1.Event
	at     time.Time
}

func (c call) ids() []string {
	out := make([]string, len(c.events))
	for i, e := range c.events {
		out[i] = e.GetEventId()
	}
	return out
}

// policy is how the fake server answers. Every field is optional.
type policy struct {
	// judge returns the verdicts for a batch (Sequence and Accepted are
	// filled in); nil or a nil result accepts every event.
	judge func(c call) []*ingestv1.RejectedEvent
	// end, when it returns true, ends the stream on receiving the batch,
	// with err (nil: OK), before answering it or any held batch.
	end func(c call) (bool, error)
	// silent batches are never answered.
	silent func(c call) bool
	// reorder holds answers until this many are ready, then sends them in
	// reverse order (held answers also go after 20ms).
	reorder int
	// gate, when set, delays every answer until it is closed.
	gate chan struct{}
}

// fakeServer is an in-process IngestService that records what it receives.
type fakeServer struct {
	ingestv1.UnimplementedIngestServiceServer
	p policy

	mu       sync.Mutex
	streams  int
	calls    []call
	answered []uint64 // sequences in the order answered
	auth     []string // authorization metadata of every stream
	accepted map[string]int
}

func (f *fakeServer) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// received returns how many times each event_id arrived.
func (f *fakeServer) received() map[string]int {
	out := map[string]int{}
	for _, c := range f.snapshot() {
		for _, id := range c.ids() {
			out[id]++
		}
	}
	return out
}

func (f *fakeServer) IngestStream(ss grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	ctx := ss.Context()
	f.mu.Lock()
	f.streams++
	no := f.streams
	f.mu.Unlock()

	reqs := make(chan *ingestv1.IngestStreamRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := ss.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	var held []*ingestv1.IngestStreamResponse
	sendHeld := func() error {
		for _, resp := range slices.Backward(held) {
			f.mu.Lock()
			f.answered = append(f.answered, resp.GetSequence())
			f.mu.Unlock()
			if err := ss.Send(resp); err != nil {
				return err
			}
		}
		held = held[:0]
		return nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return sendHeld()
			}
			return err
		case <-tick.C:
			if err := sendHeld(); err != nil {
				return err
			}
		case req := <-reqs:
			n++
			c := call{stream: no, n: n, seq: req.GetSequence(), events: req.GetEvents(), at: time.Now()}
			f.mu.Lock()
			f.calls = append(f.calls, c)
			f.mu.Unlock()
			if f.p.end != nil {
				if end, err := f.p.end(c); end {
					return err
				}
			}
			if f.p.silent != nil && f.p.silent(c) {
				continue
			}
			if f.p.gate != nil {
				select {
				case <-f.p.gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			var rejected []*ingestv1.RejectedEvent
			if f.p.judge != nil {
				rejected = f.p.judge(c)
			}
			f.mu.Lock()
			for i, e := range c.events {
				if !slices.ContainsFunc(rejected, func(r *ingestv1.RejectedEvent) bool { return int(r.GetIndex()) == i }) {
					f.accepted[e.GetEventId()]++
				}
			}
			f.mu.Unlock()
			held = append(held, &ingestv1.IngestStreamResponse{
				Sequence: c.seq, Accepted: int32(len(c.events) - len(rejected)), Rejected: rejected})
			if len(held) >= max(f.p.reorder, 1) {
				if err := sendHeld(); err != nil {
					return err
				}
			}
		}
	}
}

// authInterceptor records the authorization metadata and refuses a stream
// without the test key, as the auth interceptor of abacusd does.
func (f *fakeServer) authInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	got := md.Get("authorization")
	f.mu.Lock()
	f.auth = append(f.auth, got...)
	f.mu.Unlock()
	if len(got) != 1 || got[0] != "Bearer "+testKey {
		return status.Error(codes.Unauthenticated, "invalid API key")
	}
	return handler(srv, ss)
}

// harness runs fake servers behind one address; restart replaces the server,
// breaking the client's connection like a server restart.
type harness struct {
	t      *testing.T
	mu     sync.Mutex
	lis    *bufconn.Listener
	srv    *grpc.Server
	server *fakeServer
}

func newHarness(t *testing.T, p policy) *harness {
	h := &harness{t: t}
	h.start(p)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.srv.Stop()
	})
	return h
}

func (h *harness) start(p policy) *fakeServer {
	f := &fakeServer{p: p, accepted: map[string]int{}}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.StreamInterceptor(f.authInterceptor))
	ingestv1.RegisterIngestServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	h.mu.Lock()
	h.lis, h.srv, h.server = lis, srv, f
	h.mu.Unlock()
	return f
}

// restart stops the server at once and starts a new one with policy p.
func (h *harness) restart(p policy) *fakeServer {
	h.mu.Lock()
	old := h.srv
	h.mu.Unlock()
	old.Stop()
	return h.start(p)
}

func (h *harness) dial(ctx context.Context, _ string) (net.Conn, error) {
	h.mu.Lock()
	lis := h.lis
	h.mu.Unlock()
	return lis.DialContext(ctx)
}

// config returns a client Config for the harness: plaintext, fast backoff.
func (h *harness) config(v *verdicts) Config {
	return Config{
		Target:      "passthrough:///abacus-test",
		APIKey:      testKey,
		Insecure:    true,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(h.dial)},
		BackoffBase: 5 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
		OnVerdict:   v.record,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// newClient starts a client and closes it at the end of the test.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// verdicts collects OnVerdict calls and checks that they never overlap and
// that no event gets two.
type verdicts struct {
	t       *testing.T
	active  atomic.Int32
	overlap atomic.Bool
	mu      sync.Mutex
	byID    map[string]Verdict
	dups    []string
}

func newVerdicts(t *testing.T) *verdicts {
	v := &verdicts{t: t, byID: map[string]Verdict{}}
	t.Cleanup(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		require.Empty(t, v.dups, "events with more than one verdict")
		require.False(t, v.overlap.Load(), "OnVerdict was called concurrently")
	})
	return v
}

func (v *verdicts) record(x Verdict) {
	if v.active.Add(1) > 1 {
		v.overlap.Store(true)
	}
	defer v.active.Add(-1)
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.byID[x.EventID]; ok {
		v.dups = append(v.dups, x.EventID)
	}
	v.byID[x.EventID] = x
}

func (v *verdicts) get(id string) (Verdict, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	x, ok := v.byID[id]
	return x, ok
}

func (v *verdicts) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.byID)
}

// rejectAll returns the verdict reason for every event of c.
func rejectAll(c call, reason ingestv1.RejectReason, retryAfter time.Duration) []*ingestv1.RejectedEvent {
	out := make([]*ingestv1.RejectedEvent, len(c.events))
	for i, e := range c.events {
		out[i] = rejected(i, e, reason, retryAfter)
	}
	return out
}

func rejected(i int, e *ingestv1.Event, reason ingestv1.RejectReason, retryAfter time.Duration) *ingestv1.RejectedEvent {
	r := &ingestv1.RejectedEvent{Index: int32(i), EventId: e.GetEventId(), Reason: reason, Message: "test verdict " + reason.String()}
	if retryAfter > 0 {
		r.RetryAfter = durationpb.New(retryAfter)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for a logger used from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 2*time.Millisecond, msg)
}
