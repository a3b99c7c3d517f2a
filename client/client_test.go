package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

func event(id, typ string) *ingestv1.Event {
	return &ingestv1.Event{EventId: id, Type: typ, UserId: "u1", Timestamp: timestamppb.Now()}
}

func sendAll(t *testing.T, c *Client, events []*ingestv1.Event) {
	t.Helper()
	for _, ev := range events {
		require.NoError(t, c.Send(t.Context(), ev))
	}
}

func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.Flush(ctx))
}

// Every event gets exactly one final verdict, rejected ones with the
// server's reason, while the server answers batches out of order and several
// goroutines send at once.
func TestClient_EveryEventGetsOneVerdict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{
		reorder: 4,
		judge: func(c call) []*ingestv1.RejectedEvent {
			var out []*ingestv1.RejectedEvent
			for i, e := range c.events {
				if e.GetType() == "bad" {
					out = append(out, rejected(i, e, ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE, 0))
				}
			}
			return out
		},
	})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 25
	cfg.FlushInterval = 5 * time.Millisecond
	c := newClient(t, cfg)

	const senders, perSender = 4, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				typ := "page_view"
				if i%7 == 0 {
					typ = "bad"
				}
				if err := c.Send(t.Context(), event(fmt.Sprintf("s%d-e%d", s, i), typ)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	flush(t, c)

	require.Equal(t, senders*perSender, v.len())
	var bad int64
	for s := range senders {
		for i := range perSender {
			id := fmt.Sprintf("s%d-e%d", s, i)
			got, ok := v.get(id)
			require.True(t, ok, id)
			require.Equal(t, id, got.EventID)
			require.Equal(t, 1, got.Attempts, id)
			require.NoError(t, got.Err, id)
			if i%7 == 0 {
				bad++
				require.False(t, got.Accepted, id)
				require.Equal(t, ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE, got.Reason, id)
				require.NotEmpty(t, got.Message)
			} else {
				require.True(t, got.Accepted, id)
			}
		}
	}
	st := c.Stats()
	require.Equal(t, Stats{Accepted: senders*perSender - bad, Rejected: bad}, st)

	f := h.server
	for id, n := range f.received() {
		require.Equal(t, 1, n, "event %s sent more than once", id)
	}
	// Sequences grow on the stream, and the server did answer out of order.
	calls := f.snapshot()
	for i := 1; i < len(calls); i++ {
		require.Greater(t, calls[i].seq, calls[i-1].seq)
	}
	f.mu.Lock()
	answered := f.answered
	f.mu.Unlock()
	outOfOrder := false
	for i := 1; i < len(answered); i++ {
		outOfOrder = outOfOrder || answered[i] < answered[i-1]
	}
	require.True(t, outOfOrder, "the server should have answered out of order")
}

// A throttled batch is retried with the same event_ids, not before the
// server's retry_after, and no new batch is sent during that delay either.
func TestClient_ThrottledEventsRetryAfterDelay(t *testing.T) {
	t.Parallel()
	const retryAfter = 300 * time.Millisecond
	var (
		mu          sync.Mutex
		throttledAt time.Time
	)
	h := newHarness(t, policy{
		judge: func(c call) []*ingestv1.RejectedEvent {
			if c.stream != 1 || c.n != 1 {
				return nil
			}
			mu.Lock()
			throttledAt = time.Now() // before the answer is sent
			mu.Unlock()
			return rejectAll(c, ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, retryAfter)
		},
	})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 10
	cfg.FlushInterval = time.Hour
	cfg.MaxInFlight = 1
	c := newClient(t, cfg)

	events := make([]*ingestv1.Event, 20)
	for i := range events {
		events[i] = event("", "page_view") // ids assigned by Send
	}
	sendAll(t, c, events)
	flush(t, c)

	for i, ev := range events {
		got, ok := v.get(ev.GetEventId())
		require.True(t, ok)
		require.True(t, got.Accepted)
		if i < 10 {
			require.Equal(t, 2, got.Attempts, "throttled event is sent twice")
		} else {
			require.Equal(t, 1, got.Attempts)
		}
	}
	received := h.server.received()
	for i, ev := range events {
		want := 1
		if i < 10 {
			want = 2 // the retry kept the id Send assigned
		}
		require.Equal(t, want, received[ev.GetEventId()], ev.GetEventId())
	}
	mu.Lock()
	defer mu.Unlock()
	calls := h.server.snapshot()
	require.GreaterOrEqual(t, len(calls), 3)
	for _, cl := range calls[1:] {
		require.GreaterOrEqual(t, cl.at.Sub(throttledAt), retryAfter,
			"a batch arrived before the throttle's retry_after had passed")
	}
	st := c.Stats()
	require.Equal(t, int64(10), st.Retried)
	require.Equal(t, int64(20), st.Accepted)
}

// QUOTA_EXHAUSTED is retried only when the reset is near.
func TestClient_QuotaExhausted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter time.Duration
		accepted   bool
		attempts   int
	}{
		{name: "reset soon: retried", retryAfter: 20 * time.Millisecond, accepted: true, attempts: 2},
		{name: "reset far: final", retryAfter: 2 * time.Hour, accepted: false, attempts: 1},
		{name: "no retry_after: final", retryAfter: 0, accepted: false, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, policy{judge: func(c call) []*ingestv1.RejectedEvent {
				if c.n == 1 && c.stream == 1 {
					return rejectAll(c, ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, tt.retryAfter)
				}
				return nil
			}})
			v := newVerdicts(t)
			c := newClient(t, h.config(v))
			sendAll(t, c, []*ingestv1.Event{event("q1", "purchase")})
			flush(t, c)
			got, ok := v.get("q1")
			require.True(t, ok)
			require.Equal(t, tt.accepted, got.Accepted)
			require.Equal(t, tt.attempts, got.Attempts)
			require.NoError(t, got.Err)
			if !tt.accepted {
				require.Equal(t, ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, got.Reason)
			}
		})
	}
}

// An event that keeps getting retryable verdicts is given up after
// MaxRetries retries.
func TestClient_GivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxRetries int
		attempts   int
	}{
		{name: "two retries", maxRetries: 2, attempts: 3},
		{name: "no retries", maxRetries: -1, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, policy{judge: func(c call) []*ingestv1.RejectedEvent {
				return rejectAll(c, ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE, time.Millisecond)
			}})
			v := newVerdicts(t)
			cfg := h.config(v)
			cfg.MaxRetries = tt.maxRetries
			c := newClient(t, cfg)
			sendAll(t, c, []*ingestv1.Event{event("r1", "purchase"), event("r2", "purchase")})
			flush(t, c)
			for _, id := range []string{"r1", "r2"} {
				got, ok := v.get(id)
				require.True(t, ok)
				require.False(t, got.Accepted)
				require.Equal(t, ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE, got.Reason)
				require.Equal(t, tt.attempts, got.Attempts)
				require.ErrorIs(t, got.Err, ErrRetriesExhausted)
				require.Equal(t, tt.attempts, h.server.received()[id])
			}
			st := c.Stats()
			require.Equal(t, int64(2), st.GivenUp)
			require.Equal(t, int64(2*(tt.attempts-1)), st.Retried)
		})
	}
}

// When the stream breaks, the unanswered batches are sent again with the same
// event_ids on a new stream, after the error's RetryInfo delay.
func TestClient_StreamBreakResendsInFlight(t *testing.T) {
	t.Parallel()
	withRetryInfo := func(code codes.Code, delay time.Duration) error {
		st, err := status.New(code, "test break").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		require.NoError(t, err)
		return st.Err()
	}
	tests := []struct {
		name  string
		err   error
		delay time.Duration // the RetryInfo delay the reconnect must wait
	}{
		{name: "unavailable with retry info", err: withRetryInfo(codes.Unavailable, 150*time.Millisecond), delay: 150 * time.Millisecond},
		{name: "resource exhausted with retry info", err: withRetryInfo(codes.ResourceExhausted, 100*time.Millisecond), delay: 100 * time.Millisecond},
		{name: "internal", err: status.Error(codes.Internal, "internal error")},
		{name: "ended without error", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu      sync.Mutex
				brokeAt time.Time
			)
			h := newHarness(t, policy{
				// Stream 1 answers its first batch only, and breaks on the
				// third, leaving batches 2 and 3 unanswered.
				silent: func(c call) bool { return c.stream == 1 && c.n > 1 },
				end: func(c call) (bool, error) {
					if c.stream == 1 && c.n == 3 {
						mu.Lock()
						brokeAt = time.Now()
						mu.Unlock()
						return true, tt.err
					}
					return false, nil
				},
			})
			v := newVerdicts(t)
			cfg := h.config(v)
			cfg.BatchSize = 10
			cfg.FlushInterval = time.Hour
			c := newClient(t, cfg)
			events := make([]*ingestv1.Event, 50)
			for i := range events {
				events[i] = event(fmt.Sprintf("b%d", i), "page_view")
			}
			sendAll(t, c, events)
			flush(t, c)

			calls := h.server.snapshot()
			first := map[string]int{} // id -> batch number on stream 1
			for _, cl := range calls {
				if cl.stream == 1 {
					for _, id := range cl.ids() {
						first[id] = cl.n
					}
				}
			}
			received := h.server.received()
			for _, ev := range events {
				id := ev.GetEventId()
				got, ok := v.get(id)
				require.True(t, ok, id)
				require.True(t, got.Accepted, id)
				switch first[id] {
				case 2, 3: // in flight at the break: sent again, same id
					require.Equal(t, 2, received[id], id)
					require.Equal(t, 2, got.Attempts, id)
				default:
					require.Equal(t, 1, received[id], id)
				}
			}
			require.Positive(t, c.Stats().Reconnects)
			if tt.delay > 0 {
				mu.Lock()
				defer mu.Unlock()
				for _, cl := range calls {
					if cl.stream > 1 {
						require.GreaterOrEqual(t, cl.at.Sub(brokeAt), tt.delay, "reconnected before the RetryInfo delay")
					}
				}
			}
		})
	}
}

// A server restart breaks the connection; the client reconnects to the new
// server and sends the unanswered events again.
func TestClient_ServerRestart(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{}) // the first server never answers
	t.Cleanup(func() { close(gate) })
	h := newHarness(t, policy{gate: gate})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 10
	cfg.FlushInterval = time.Millisecond
	c := newClient(t, cfg)
	first := h.server

	events := make([]*ingestv1.Event, 30)
	for i := range events {
		events[i] = event(fmt.Sprintf("r%d", i), "page_view")
	}
	sendAll(t, c, events)
	eventually(t, func() bool { return len(first.snapshot()) > 0 }, "first server received a batch")
	second := h.restart(policy{})
	flush(t, c)

	for _, ev := range events {
		got, ok := v.get(ev.GetEventId())
		require.True(t, ok)
		require.True(t, got.Accepted)
	}
	for id := range first.received() {
		require.Equal(t, 1, second.received()[id], "event %s sent to the first server is sent again", id)
	}
}

// A stream error that retrying cannot fix is the final verdict of the events
// in flight; the client does not retry them.
func TestClient_FinalStreamError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.APIKey = "abk_revoked"
	c := newClient(t, cfg)
	sendAll(t, c, []*ingestv1.Event{event("a1", "x"), event("a2", "x")})
	flush(t, c)
	for _, id := range []string{"a1", "a2"} {
		got, ok := v.get(id)
		require.True(t, ok)
		require.False(t, got.Accepted)
		require.Equal(t, 1, got.Attempts)
		require.Equal(t, codes.Unauthenticated, status.Code(got.Err))
	}
	require.Equal(t, int64(2), c.Stats().GivenUp)
	require.Equal(t, int64(0), c.Stats().Retried)
}

// A batch left unanswered for ResponseTimeout ends the stream; its events go
// again on a new one.
func TestClient_ResponseTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{silent: func(c call) bool { return c.stream == 1 }})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.ResponseTimeout = 100 * time.Millisecond
	c := newClient(t, cfg)
	sendAll(t, c, []*ingestv1.Event{event("t1", "x")})
	flush(t, c)
	got, ok := v.get("t1")
	require.True(t, ok)
	require.True(t, got.Accepted)
	// At least once on the silent stream and once on a later one (more if
	// a slow machine lets a later answer miss the short timeout too).
	require.GreaterOrEqual(t, got.Attempts, 2)
	require.Equal(t, got.Attempts, h.server.received()["t1"])
	require.Positive(t, c.Stats().Reconnects)
}

// The server's batch limit below BatchSize makes the client send smaller
// batches; the events past the limit are sent again, not lost.
func TestClient_BatchTooLargeShrinksBatches(t *testing.T) {
	t.Parallel()
	const limit = 4
	h := newHarness(t, policy{judge: func(c call) []*ingestv1.RejectedEvent {
		var out []*ingestv1.RejectedEvent
		for i := limit; i < len(c.events); i++ {
			out = append(out, rejected(i, c.events[i], ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE, 0))
		}
		return out
	}})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 10
	cfg.FlushInterval = time.Hour
	cfg.MaxInFlight = 1
	c := newClient(t, cfg)
	events := make([]*ingestv1.Event, 30)
	for i := range events {
		events[i] = event(fmt.Sprintf("l%d", i), "x")
	}
	sendAll(t, c, events)
	flush(t, c)
	for _, ev := range events {
		got, ok := v.get(ev.GetEventId())
		require.True(t, ok)
		require.True(t, got.Accepted, ev.GetEventId())
	}
	calls := h.server.snapshot()
	require.Len(t, calls[0].events, 10)
	for _, cl := range calls[1:] {
		require.LessOrEqual(t, len(cl.events), limit)
	}
}

// Batches go when full, and partial ones when their oldest event has waited
// FlushInterval or on Flush.
func TestClient_Batching(t *testing.T) {
	t.Parallel()
	t.Run("by size and flush", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, policy{})
		v := newVerdicts(t)
		cfg := h.config(v)
		cfg.BatchSize = 10
		cfg.FlushInterval = time.Hour
		c := newClient(t, cfg)
		for i := range 25 {
			require.NoError(t, c.Send(t.Context(), event(fmt.Sprintf("s%d", i), "x")))
		}
		eventually(t, func() bool { return len(h.server.snapshot()) == 2 }, "two full batches sent without a flush")
		flush(t, c)
		var sizes []int
		for _, cl := range h.server.snapshot() {
			sizes = append(sizes, len(cl.events))
		}
		require.Equal(t, []int{10, 10, 5}, sizes)
		require.Equal(t, 25, v.len())
	})
	t.Run("by time", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, policy{})
		v := newVerdicts(t)
		cfg := h.config(v)
		cfg.BatchSize = 1000
		cfg.FlushInterval = 20 * time.Millisecond
		c := newClient(t, cfg)
		for i := range 3 {
			require.NoError(t, c.Send(t.Context(), event(fmt.Sprintf("t%d", i), "x")))
		}
		eventually(t, func() bool { return v.len() == 3 }, "a partial batch is sent after FlushInterval")
		calls := h.server.snapshot()
		require.Len(t, calls, 1)
		require.Len(t, calls[0].events, 3)
	})
	t.Run("by bytes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, policy{})
		v := newVerdicts(t)
		cfg := h.config(v)
		cfg.MaxBatchBytes = 2048
		cfg.FlushInterval = time.Hour
		c := newClient(t, cfg)
		big := strings.Repeat("v", 400)
		for i := range 20 {
			ev := event(fmt.Sprintf("b%d", i), "x")
			ev.Properties = map[string]string{"k": big}
			require.NoError(t, c.Send(t.Context(), ev))
		}
		flush(t, c)
		require.Equal(t, 20, v.len())
		for _, cl := range h.server.snapshot() {
			size := proto.Size(&ingestv1.IngestStreamRequest{Events: cl.events})
			require.LessOrEqual(t, size, 2048)
		}

		tooBig := event("huge", "x")
		tooBig.Properties = map[string]string{"k": strings.Repeat("v", 4096)}
		require.ErrorIs(t, c.Send(t.Context(), tooBig), ErrEventTooLarge)
		require.ErrorIs(t, c.TrySend(tooBig), ErrEventTooLarge)
	})
}

// Flush returns only when every earlier event has its verdict delivered,
// and gives up with an error when its context ends first.
func TestClient_FlushWaitsForVerdicts(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	h := newHarness(t, policy{gate: gate})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 10
	c := newClient(t, cfg)
	for i := range 20 {
		require.NoError(t, c.Send(t.Context(), event(fmt.Sprintf("f%d", i), "x")))
	}

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := c.Flush(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "20 events without a final verdict")

	done := make(chan error, 1)
	go func() { done <- c.Flush(t.Context()) }()
	eventually(t, func() bool { return len(h.server.snapshot()) >= 1 }, "server received a batch")
	select {
	case err := <-done:
		t.Fatalf("Flush returned %v before any answer", err)
	default:
	}
	require.Equal(t, 0, v.len())
	close(gate)
	require.NoError(t, <-done)
	require.Equal(t, 20, v.len(), "Flush returned before every verdict was delivered")
	require.Equal(t, Stats{Accepted: 20}, c.Stats())
}

// Close sends what is queued, waits for the verdicts and stops the client.
func TestClient_CloseDrains(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 1000
	cfg.FlushInterval = time.Hour
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, c.Send(t.Context(), event(fmt.Sprintf("c%d", i), "x")))
	}
	require.NoError(t, c.Close(t.Context()))
	require.Equal(t, 100, v.len())
	require.Equal(t, int64(100), c.Stats().Accepted)
	require.Equal(t, 100, len(h.server.received()))

	require.ErrorIs(t, c.Send(t.Context(), event("late", "x")), ErrClosed)
	require.ErrorIs(t, c.TrySend(event("late", "x")), ErrClosed)
	require.ErrorIs(t, c.Close(t.Context()), ErrClosed)
	require.NoError(t, c.Flush(t.Context()))
}

// Close with a deadline gives the events without a verdict ErrAbandoned and
// says how many there were.
func TestClient_CloseDeadlineAbandons(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{silent: func(call) bool { return true }})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BatchSize = 5
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, c.Send(t.Context(), event(fmt.Sprintf("d%d", i), "x")))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = c.Close(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "20 events had no final verdict")
	require.Equal(t, 20, v.len())
	for i := range 20 {
		got, _ := v.get(fmt.Sprintf("d%d", i))
		require.ErrorIs(t, got.Err, ErrAbandoned)
		require.False(t, got.Accepted)
	}
	require.Equal(t, Stats{GivenUp: 20}, c.Stats())
}

// The buffer bounds the events held: TrySend fails and Send blocks when it
// is full, until verdicts free room, Send's context ends, or Close begins.
func TestClient_BufferBound(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	h := newHarness(t, policy{gate: gate})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BufferEvents = 10
	cfg.BatchSize = 5
	c := newClient(t, cfg)

	for i := range 10 {
		require.NoError(t, c.TrySend(event(fmt.Sprintf("x%d", i), "x")))
	}
	require.ErrorIs(t, c.TrySend(event("x10", "x")), ErrBufferFull)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Send(ctx, event("x10", "x")), context.DeadlineExceeded)
	require.Equal(t, 10, c.Stats().Buffered)

	done := make(chan error, 1)
	go func() { done <- c.Send(t.Context(), event("x10", "x")) }()
	close(gate)
	require.NoError(t, <-done)
	flush(t, c)
	require.Equal(t, 11, v.len())
	require.Equal(t, 0, c.Stats().Buffered)
}

func TestClient_CloseWakesBlockedSend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{silent: func(call) bool { return true }})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.BufferEvents = 1
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	require.NoError(t, c.Send(t.Context(), event("only", "x")))
	done := make(chan error, 1)
	go func() { done <- c.Send(t.Context(), event("blocked", "x")) }()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	require.Error(t, c.Close(ctx))
	require.ErrorIs(t, <-done, ErrClosed)
	got, ok := v.get("only")
	require.True(t, ok)
	require.ErrorIs(t, got.Err, ErrAbandoned)
}

// The API key goes as bearer metadata and appears in no log line and no
// rendering of the Config.
func TestClient_APIKeyIsBearerAndNeverShown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{end: func(c call) (bool, error) {
		// One break, so that the failure paths log too.
		return c.stream == 1, status.Error(codes.Unavailable, "restarting")
	}})
	var logs syncBuffer
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Logger.Info("client config", "config", cfg)
	c := newClient(t, cfg)
	sendAll(t, c, []*ingestv1.Event{event("k1", "x")})
	flush(t, c)
	got, _ := v.get("k1")
	require.True(t, got.Accepted)

	h.server.mu.Lock()
	auth := h.server.auth
	h.server.mu.Unlock()
	require.NotEmpty(t, auth)
	for _, a := range auth {
		require.Equal(t, "Bearer "+testKey, a)
	}

	require.Contains(t, logs.String(), "ingest stream failed")
	require.NotContains(t, logs.String(), testKey)
	var js strings.Builder
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", cfg)
	renderings := []string{
		fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%s", cfg), fmt.Sprintf("%d", cfg), fmt.Sprintf("%v", &cfg), cfg.String(), js.String(),
		fmt.Sprintf("%v", newBearer(testKey, true)),
	}
	for _, r := range renderings {
		require.NotContains(t, r, testKey)
		require.NotContains(t, r, "SECRET")
	}
	require.Contains(t, cfg.String(), "<redacted>")
}

// Without Insecure the client insists on TLS: against a plaintext server the
// stream never opens, so the key is never sent, and the events wait.
func TestClient_TLSByDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{})
	v := newVerdicts(t)
	cfg := h.config(v)
	cfg.Insecure = false
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	require.NoError(t, c.Send(t.Context(), event("tls1", "x")))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Close(ctx), context.DeadlineExceeded)
	got, ok := v.get("tls1")
	require.True(t, ok)
	require.ErrorIs(t, got.Err, ErrAbandoned)
	require.Equal(t, 0, got.Attempts)
	h.server.mu.Lock()
	defer h.server.mu.Unlock()
	require.Empty(t, h.server.auth, "the key reached a plaintext server")
}

// Send fills in a missing event_id (a UUIDv7) and timestamp, and keeps those
// given.
func TestClient_SendAssignsIDAndTimestamp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, policy{})
	v := newVerdicts(t)
	c := newClient(t, h.config(v))

	bare := &ingestv1.Event{Type: "x"}
	require.NoError(t, c.Send(t.Context(), bare))
	id, err := uuid.Parse(bare.GetEventId())
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.NotNil(t, bare.GetTimestamp())

	ts := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	given := &ingestv1.Event{EventId: "mine-1", Type: "x", Timestamp: ts}
	require.NoError(t, c.Send(t.Context(), given))
	require.Equal(t, "mine-1", given.GetEventId())
	require.True(t, proto.Equal(ts, given.GetTimestamp()))

	require.ErrorIs(t, c.Send(t.Context(), nil), ErrNilEvent)
	require.ErrorIs(t, c.TrySend(nil), ErrNilEvent)

	flush(t, c)
	_, ok := v.get(bare.GetEventId())
	require.True(t, ok)
	_, ok = v.get("mine-1")
	require.True(t, ok)
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := New(t.Context(), Config{})
	require.ErrorContains(t, err, "Target is empty")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = New(ctx, Config{Target: "localhost:1", APIKey: "k"})
	require.ErrorIs(t, err, context.Canceled)
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	valid := Config{Target: "localhost:9090", APIKey: testKey}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // every message expected; none means valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "explicit values", mutate: func(c *Config) {
			c.BatchSize, c.MaxInFlight, c.BufferEvents, c.MaxRetries = 10000, 1024, 1, -1
			c.MaxBatchBytes, c.BufferBytes = 1024, 1024
			c.BackoffBase, c.BackoffMax = time.Second, time.Second
		}},
		{name: "missing target and key", mutate: func(c *Config) { c.Target, c.APIKey = "", "" },
			want: []string{"Target is empty", "APIKey is empty"}},
		{name: "key with a newline", mutate: func(c *Config) { c.APIKey = "abk_x\nInjected: 1" },
			want: []string{"APIKey has characters not allowed"}},
		{name: "every number out of range", mutate: func(c *Config) {
			c.BatchSize, c.MaxBatchBytes, c.FlushInterval, c.MaxInFlight = 10001, 10, -1, 2000
			c.BufferEvents, c.BufferBytes = -1, -1
			c.BackoffBase, c.BackoffMax, c.ResponseTimeout = -1, 48*time.Hour, -time.Second
		}, want: []string{"BatchSize is 10001", "MaxBatchBytes is 10", "FlushInterval is -1ns", "MaxInFlight is 2000",
			"BufferEvents is -1", "BufferBytes is -1", "BackoffBase is -1ns", "BackoffMax is 48h0m0s", "ResponseTimeout is -1s"}},
		{name: "relations", mutate: func(c *Config) { c.BackoffBase, c.BackoffMax, c.BufferBytes = time.Minute, time.Second, 2048 },
			want: []string{"BackoffBase (1m0s) is larger than BackoffMax (1s)", "BufferBytes (2048) is smaller than MaxBatchBytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.mutate(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
			require.Len(t, strings.Split(err.Error(), "\n"), len(tt.want))
			require.NotContains(t, err.Error(), "Injected")
		})
	}
}

func TestVerdictRetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason     ingestv1.RejectReason
		retryAfter *durationpb.Duration
		retryable  bool
		delay      time.Duration
	}{
		{ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, durationpb.New(2 * time.Second), true, 2 * time.Second},
		{ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, nil, true, 0},
		{ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE, durationpb.New(time.Second), true, time.Second},
		{ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE, durationpb.New(-time.Second), true, 0},
		{ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE, &durationpb.Duration{Seconds: 1, Nanos: -1}, true, 0},
		{ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, durationpb.New(2 * time.Hour), false, 0},
		{ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, durationpb.New(time.Hour), true, time.Hour},
		{ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, durationpb.New(time.Hour + 1), false, 0},
		{ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, nil, false, 0},
		{ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE, durationpb.New(time.Second), false, 0},
		{ingestv1.RejectReason_REJECT_REASON_TENANT_SUSPENDED, nil, false, 0},
		{ingestv1.RejectReason(999), nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%v", tt.reason, tt.retryAfter.AsDuration()), func(t *testing.T) {
			t.Parallel()
			retryable, delay := verdictRetry(&ingestv1.RejectedEvent{Reason: tt.reason, RetryAfter: tt.retryAfter})
			require.Equal(t, tt.retryable, retryable)
			require.Equal(t, tt.delay, delay)
		})
	}
}

func TestStreamRetry(t *testing.T) {
	t.Parallel()
	withInfo := func(code codes.Code, d time.Duration) error {
		st, err := status.New(code, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		require.NoError(t, err)
		return st.Err()
	}
	tests := []struct {
		name      string
		err       error
		retryable bool
		delay     time.Duration
	}{
		{"unavailable", status.Error(codes.Unavailable, "x"), true, 0},
		{"unavailable with retry info", withInfo(codes.Unavailable, 3*time.Second), true, 3 * time.Second},
		{"resource exhausted with retry info", withInfo(codes.ResourceExhausted, time.Second), true, time.Second},
		{"retry info too long", withInfo(codes.ResourceExhausted, 2*time.Hour), false, 0},
		{"internal", status.Error(codes.Internal, "x"), true, 0},
		{"canceled by the server", status.Error(codes.Canceled, "x"), true, 0},
		{"unauthenticated", status.Error(codes.Unauthenticated, "x"), false, 0},
		{"permission denied", status.Error(codes.PermissionDenied, "x"), false, 0},
		{"invalid argument", status.Error(codes.InvalidArgument, "x"), false, 0},
		{"unimplemented", status.Error(codes.Unimplemented, "x"), false, 0},
		{"response timeout", errResponseTimeout, true, 0},
		{"ended", errStreamEnded, true, 0},
		{"transport", errors.New("connection reset"), true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			retryable, delay := streamRetry(tt.err)
			require.Equal(t, tt.retryable, retryable)
			require.Equal(t, tt.delay, delay)
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, maxDelay := 100*time.Millisecond, 3*time.Second
	for n := 1; n <= 70; n++ {
		ceiling := min(maxDelay, base<<min(n-1, 20))
		for range 50 {
			d := backoff(base, maxDelay, n)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceiling, "attempt %d", n)
		}
	}
	require.Equal(t, time.Duration(0), backoff(0, 0, 3))
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	rej := func(i int32) *ingestv1.RejectedEvent {
		return &ingestv1.RejectedEvent{Index: i, Reason: ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE}
	}
	tests := []struct {
		name      string
		n         int
		resp      *ingestv1.IngestStreamResponse
		rejected  []int
		anomalies int
	}{
		{"all accepted", 3, &ingestv1.IngestStreamResponse{Accepted: 3}, nil, 0},
		{"some rejected", 3, &ingestv1.IngestStreamResponse{Accepted: 1, Rejected: []*ingestv1.RejectedEvent{rej(2), rej(0)}}, []int{0, 2}, 0},
		{"index out of range", 2, &ingestv1.IngestStreamResponse{Accepted: 1, Rejected: []*ingestv1.RejectedEvent{rej(5), rej(-1), rej(1)}}, []int{1}, 2},
		{"duplicate index", 2, &ingestv1.IngestStreamResponse{Accepted: 0, Rejected: []*ingestv1.RejectedEvent{rej(1), rej(1)}}, []int{1}, 2},
		{"accepted count off", 2, &ingestv1.IngestStreamResponse{Accepted: 7}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, anomalies := reconcile(tt.n, tt.resp)
			require.Len(t, got, tt.n)
			var idx []int
			for i, r := range got {
				if r != nil {
					idx = append(idx, i)
				}
			}
			require.Equal(t, tt.rejected, idx)
			require.Equal(t, tt.anomalies, anomalies)
		})
	}
}

// FuzzReconcile feeds arbitrary server responses to the matching of
// verdicts to a batch: each event ends with at most one verdict, at its own
// index, and nothing panics.
func FuzzReconcile(f *testing.F) {
	seed, _ := proto.Marshal(&ingestv1.IngestStreamResponse{Sequence: 3, Accepted: 1, Rejected: []*ingestv1.RejectedEvent{
		{Index: 1, Reason: ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, RetryAfter: durationpb.New(time.Second)},
		{Index: 9, Reason: ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, RetryAfter: &durationpb.Duration{Seconds: -5, Nanos: 7}},
	}})
	f.Add(seed, uint16(2))
	f.Add([]byte{}, uint16(0))
	f.Add([]byte{0x1a, 0x02, 0x08, 0x7f}, uint16(10000))
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		size := int(n % 10001)
		var resp ingestv1.IngestStreamResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		got, anomalies := reconcile(size, &resp)
		if len(got) != size || anomalies < 0 {
			t.Fatalf("reconcile(%d): %d results, %d anomalies", size, len(got), anomalies)
		}
		for i, r := range got {
			if r == nil {
				continue
			}
			if int(r.GetIndex()) != i {
				t.Fatalf("verdict for index %d placed at %d", r.GetIndex(), i)
			}
			retryable, delay := verdictRetry(r)
			if delay < 0 || delay > MaxQuotaRetryAfter || (!retryable && delay != 0) {
				t.Fatalf("verdictRetry(%v) = %v, %v", r, retryable, delay)
			}
		}
	})
}

// FuzzStreamRetry feeds arbitrary google.rpc.Status messages, as decoded
// from a stream's grpc-status-details-bin, to the stream error
// classification: delays stay within bounds and nothing panics.
func FuzzStreamRetry(f *testing.F) {
	st, _ := status.New(codes.Unavailable, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	seed, _ := proto.Marshal(st.Proto())
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p spb.Status
		if proto.Unmarshal(data, &p) != nil || p.GetCode() == 0 {
			return
		}
		retryable, delay := streamRetry(status.FromProto(&p).Err())
		if delay < 0 || delay > MaxQuotaRetryAfter || (!retryable && delay != 0) {
			t.Fatalf("streamRetry(%v) = %v, %v", &p, retryable, delay)
		}
	})
}
