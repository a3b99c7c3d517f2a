package client

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// closeGrace bounds how long Close waits for the server to end the last
// stream after the client half-closed it.
const closeGrace = 5 * time.Second

// stream is one IngestStream and the batches sent on it and not answered.
type stream struct {
	s        grpc.BidiStreamingClient[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]
	ctx      context.Context
	cancel   context.CancelCauseFunc
	inflight map[uint64]*batch // by sequence; guarded by Client.mu
	recvDone chan struct{}     // closed when the receiver returns
}

// batch is one request of a stream.
type batch struct {
	seq    uint64
	items  []*item
	sentAt time.Time
}

// action is what the sender loop does next.
type action int

const (
	actWait action = iota
	actConnect
	actSend
	actStop
)

// run is the sender loop, the only goroutine that opens streams and sends on
// them. It sends a batch when one is due and the stream has room, and
// otherwise sleeps until something changes (nudge) or a deadline passes.
func (c *Client) run() {
	defer close(c.runDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if c.runCtx.Err() != nil {
			c.mu.Lock()
			st := c.cur
			c.mu.Unlock()
			if st != nil {
				st.cancel(nil)
			}
			return
		}
		c.mu.Lock()
		act, st, b, wait := c.next(time.Now())
		stopCtx, graceful := c.stopCtx, c.graceful
		c.mu.Unlock()

		switch act {
		case actStop:
			c.endStream(st, stopCtx, graceful)
			return
		case actConnect:
			c.connect()
		case actSend:
			c.send(st, b)
		case actWait:
			if wait > 0 {
				timer.Reset(wait)
			} else {
				timer.Stop()
			}
			select {
			case <-c.wake:
			case <-timer.C:
			case <-c.runCtx.Done():
			}
		}
	}
}

// next decides the loop's next step. For actWait, wait is how long at most
// (0: until nudged). For actSend, b is the batch, already in st's in-flight
// set. Called with c.mu held.
func (c *Client) next(now time.Time) (act action, st *stream, b *batch, wait time.Duration) {
	if c.stopping {
		return actStop, c.cur, nil, 0
	}
	c.retries.promote(now, &c.retryReady)
	ready := c.retryReady.len() + c.queue.len()
	// untilRetry is the wait for the next delayed retry, 0 if none.
	var untilRetry time.Duration
	if c.retries.Len() > 0 {
		untilRetry = max(c.retries[0].readyAt.Sub(now), time.Millisecond)
	}
	switch {
	case ready == 0:
		return actWait, nil, nil, untilRetry
	case c.cur == nil && now.Before(c.reconnAt):
		return actWait, nil, nil, c.reconnAt.Sub(now)
	case c.cur == nil:
		return actConnect, nil, nil, 0
	case len(c.cur.inflight) >= c.cfg.MaxInFlight:
		return actWait, nil, nil, 0 // a response or a failure nudges
	case now.Before(c.pauseUntil):
		return actWait, nil, nil, c.pauseUntil.Sub(now)
	}

	full := ready >= c.batchSize || c.retryReady.bytes+c.queue.bytes >= c.cfg.MaxBatchBytes
	if !full && c.flushing == 0 && !c.closing {
		oldest := now
		if c.retryReady.len() > 0 {
			oldest = c.retryReady.peek().readyAt
		}
		if c.queue.len() > 0 && c.queue.peek().readyAt.Before(oldest) {
			oldest = c.queue.peek().readyAt
		}
		if due := oldest.Add(c.cfg.FlushInterval); now.Before(due) {
			wait = due.Sub(now)
			if untilRetry > 0 {
				wait = min(wait, untilRetry)
			}
			return actWait, nil, nil, wait
		}
	}
	return actSend, c.cur, c.takeBatch(now), 0
}

// takeBatch moves up to a batch of ready events, retries first, into a new
// batch in flight on c.cur. Called with c.mu held and at least one event
// ready.
func (c *Client) takeBatch(now time.Time) *batch {
	b := &batch{seq: c.nextSeq, sentAt: now, items: make([]*item, 0, min(c.batchSize, c.retryReady.len()+c.queue.len()))}
	c.nextSeq++
	bytes := 0
	for len(b.items) < c.batchSize {
		q := &c.retryReady
		if q.len() == 0 {
			q = &c.queue
		}
		if q.len() == 0 {
			break
		}
		// A batch always takes its first event: Send refused larger ones.
		if len(b.items) > 0 && bytes+q.peek().size > c.cfg.MaxBatchBytes {
			break
		}
		it := q.pop()
		it.tries++
		bytes += it.size
		b.items = append(b.items, it)
	}
	c.cur.inflight[b.seq] = b
	c.inFlight += len(b.items)
	return b
}

// connect opens a stream and starts its receiver and watchdog; on failure it
// schedules the next attempt with backoff.
func (c *Client) connect() {
	ctx, cancel := context.WithCancelCause(c.runCtx)
	s, err := c.api.IngestStream(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		cancel(nil)
		if c.runCtx.Err() != nil {
			return
		}
		c.failures++
		_, delay := streamRetry(err)
		wait := max(delay, backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, c.failures))
		c.reconnAt = time.Now().Add(wait)
		c.logger.Warn("ingest stream could not be opened", "target", c.cfg.Target, "error", err,
			"failures", c.failures, "retry_in", wait)
		return
	}
	st := &stream{s: s, ctx: ctx, cancel: cancel, inflight: make(map[uint64]*batch), recvDone: make(chan struct{})}
	if c.opened > 0 {
		c.stats.Reconnects++
	}
	c.opened++
	c.cur = st
	c.streams.Add(2)
	go c.receive(st)
	go c.watch(st)
	c.logger.Debug("ingest stream opened", "target", c.cfg.Target)
}

// send sends b on st. A failed send ends the stream; the receiver then
// accounts for the batches in flight, b included.
func (c *Client) send(st *stream, b *batch) {
	events := make([]*ingestv1.Event, len(b.items))
	for i, it := range b.items {
		events[i] = it.ev
	}
	err := st.s.Send(&ingestv1.IngestStreamRequest{Sequence: b.seq, Events: events})
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// The stream has ended; Recv returns why.
	default:
		st.cancel(fmt.Errorf("client: send batch: %w", err))
	}
}

// endStream ends the last stream at Close: gracefully (half-close, then wait
// for the server to end it) when every batch was answered, else at once.
func (c *Client) endStream(st *stream, ctx context.Context, graceful bool) {
	if st == nil {
		return
	}
	if graceful && st.s.CloseSend() == nil {
		t := time.NewTimer(closeGrace)
		select {
		case <-st.recvDone:
		case <-ctx.Done():
		case <-c.runCtx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	st.cancel(nil)
}

// receive reads st's responses until it ends.
func (c *Client) receive(st *stream) {
	defer c.streams.Done()
	defer close(st.recvDone)
	for {
		resp, err := st.s.Recv()
		if err != nil {
			c.streamEnded(st, err)
			return
		}
		c.answer(st, resp)
	}
}

// watch ends st when a batch stays unanswered longer than ResponseTimeout.
func (c *Client) watch(st *stream) {
	defer c.streams.Done()
	timeout := c.cfg.ResponseTimeout
	tick := time.NewTicker(max(timeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case now := <-tick.C:
			c.mu.Lock()
			expired := false
			for _, b := range st.inflight {
				if now.Sub(b.sentAt) > timeout {
					expired = true
					break
				}
			}
			c.mu.Unlock()
			if expired {
				st.cancel(errResponseTimeout)
				return
			}
		}
	}
}

// answer applies the response to its batch: a final verdict for every event
// accepted or rejected for good, a retry for the others. A response with
// retry delays pauses new batches for the shortest of them.
func (c *Client) answer(st *stream, resp *ingestv1.IngestStreamResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := st.inflight[resp.GetSequence()]
	if !ok {
		if !c.closing {
			c.logger.Warn("ingest response for no batch in flight; ignored", "sequence", resp.GetSequence())
		}
		return
	}
	delete(st.inflight, b.seq)
	c.inFlight -= len(b.items)
	c.failures = 0
	defer c.nudge()

	rejected, anomalies := reconcile(len(b.items), resp)
	if anomalies > 0 {
		c.logger.Warn("ingest response does not match its batch; unlisted events taken as accepted",
			"sequence", b.seq, "events", len(b.items), "accepted", resp.GetAccepted(),
			"rejected", len(resp.GetRejected()), "anomalies", anomalies)
	}
	now := time.Now()
	pause := time.Duration(-1)
	givenUp := 0
	for i, it := range b.items {
		r := rejected[i]
		if r == nil {
			c.finish(it, Verdict{Accepted: true})
			continue
		}
		reason, msg := r.GetReason(), r.GetMessage()
		if reason == ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE && r.GetIndex() > 0 {
			// The tenant's batch limit is below BatchSize: the events past
			// it were not looked at. Send smaller batches from now on.
			c.batchSize = min(c.batchSize, int(r.GetIndex()))
			if !c.retryLater(it, now, 0, reason, msg) {
				givenUp++
			}
			continue
		}
		retryable, delay := verdictRetry(r)
		if !retryable {
			c.finish(it, Verdict{Reason: reason, Message: msg})
			continue
		}
		if delay > 0 && (pause < 0 || delay < pause) {
			pause = delay
		}
		wait := max(delay, backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, it.tries))
		if !c.retryLater(it, now, wait, reason, msg) {
			givenUp++
		}
	}
	if pause > 0 {
		if until := now.Add(pause); until.After(c.pauseUntil) {
			c.pauseUntil = until
		}
	}
	if givenUp > 0 {
		c.logger.Warn("events given up after retries", "sequence", b.seq, "events", givenUp,
			"max_retries", c.cfg.MaxRetries)
	}
}

// retryLater schedules it to be sent again after wait, or gives it up when
// it has used its retries; it reports whether it was scheduled. Called with
// c.mu held.
func (c *Client) retryLater(it *item, now time.Time, wait time.Duration, reason ingestv1.RejectReason, msg string) bool {
	if it.tries > c.cfg.MaxRetries {
		c.finish(it, Verdict{Reason: reason, Message: msg,
			Err: fmt.Errorf("%w after %d attempts: last verdict %v: %s", ErrRetriesExhausted, it.tries, reason, msg)})
		return false
	}
	c.schedule(it, now.Add(wait))
	return true
}

func (c *Client) schedule(it *item, at time.Time) {
	it.readyAt = at
	heap.Push(&c.retries, it)
	c.stats.Retried++
}

// streamEnded accounts for a stream that ended with err: its unanswered
// batches are sent again on a new stream (or given up), and the next stream
// is opened after a backoff.
func (c *Client) streamEnded(st *stream, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cause := context.Cause(st.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the client ended it: response timeout or failed send
	}
	st.cancel(nil)
	if c.cur == st {
		c.cur = nil
	}
	defer c.nudge()
	if c.stopping || c.runCtx.Err() != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		if len(st.inflight) == 0 {
			c.logger.Debug("ingest stream ended by the server")
			return
		}
		err = errStreamEnded
	}

	retryable, delay := streamRetry(err)
	c.failures++
	now := time.Now()
	wait := max(delay, backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, c.failures))
	c.reconnAt = now.Add(wait)

	var items []*item
	for _, seq := range slices.Sorted(maps.Keys(st.inflight)) {
		items = append(items, st.inflight[seq].items...)
	}
	clear(st.inflight)
	c.inFlight -= len(items)
	// err is logged as is: status messages come from the server, and the
	// API key is never part of them.
	c.logger.Warn("ingest stream failed", "error", err, "events_in_flight", len(items),
		"retry", retryable, "failures", c.failures, "reconnect_in", wait)

	givenUp := 0
	for _, it := range items {
		switch {
		case !retryable:
			c.finish(it, Verdict{Err: err})
			givenUp++
		case it.tries > c.cfg.MaxRetries:
			c.finish(it, Verdict{Err: fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, it.tries, err)})
			givenUp++
		default:
			// Sent again on the next stream, opened after wait; the server's
			// delay, if any, applies to the events too.
			c.schedule(it, now.Add(delay))
		}
	}
	if givenUp > 0 {
		c.logger.Warn("events given up after a stream failure", "events", givenUp)
	}
}
