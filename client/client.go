package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// maxResponseBytes bounds a response message: a batch of 10,000 rejected
// events with long messages stays well below it.
const maxResponseBytes = 64 << 20

// Client sends events to Abacus over one long-lived, pipelined IngestStream,
// batching, retrying and reporting a final verdict for each. Create it with
// [New]; it is safe for concurrent use. See the package documentation for its
// guarantees.
type Client struct {
	cfg    Config // with defaults
	logger *slog.Logger
	conn   *grpc.ClientConn
	api    ingestv1.IngestServiceClient

	runCtx    context.Context // the background work; canceled by Close
	runCancel context.CancelFunc
	wake      chan struct{} // nudges the sender loop (capacity 1)
	deliver   chan struct{} // nudges the verdict dispatcher (capacity 1)
	quit      chan struct{} // closed by Close once every verdict is delivered
	runDone   chan struct{} // closed when the sender loop returns
	dispDone  chan struct{} // closed when the dispatcher returns
	closeDone chan struct{} // closed when Close returns
	streams   sync.WaitGroup

	mu         sync.Mutex
	closing    bool // Close began: Send refuses, partial batches go at once
	stopping   bool // Close ends the stream and the sender loop
	graceful   bool // end the last stream with CloseSend rather than canceling it
	stopCtx    context.Context
	admitted   uint64 // events admitted so far; the last one's item.n
	held       int    // events held, until their verdict is delivered
	heldBytes  int
	room       chan struct{} // closed and replaced when events are released
	queue      fifo          // new events, in admission order
	retryReady fifo          // retried events whose delay has passed
	retries    retryHeap     // retried events waiting for their delay
	cur        *stream       // the open stream, or nil
	nextSeq    uint64
	batchSize  int       // events per batch; lowered when the server's limit is lower
	pauseUntil time.Time // no batch is sent before (the server asked to wait)
	reconnAt   time.Time // no stream is opened before
	failures   int       // consecutive stream failures, for the reconnect backoff
	opened     int       // streams opened
	inFlight   int       // events in batches sent and unanswered
	flushing   int       // Flush calls waiting: partial batches go at once
	waiters    []*flushWaiter
	pending    []delivery // final verdicts awaiting OnVerdict
	stats      Stats
}

// flushWaiter is a Flush waiting for the events admitted up to upTo.
type flushWaiter struct {
	upTo      uint64
	remaining int
	done      chan struct{}
}

// delivery is a final verdict on its way to OnVerdict.
type delivery struct {
	v  Verdict
	it *item
}

// New validates cfg and returns a client for cfg.Target. It does not block:
// the connection and the stream are opened when the first batch is ready.
// ctx's values (trace context, outgoing metadata) apply to the client's
// streams; its cancellation does not stop the client — Close does.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("client: new: %w", err)
	}
	cfg = cfg.withDefaults()

	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if cfg.Insecure {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(newBearer(cfg.APIKey, !cfg.Insecure)),
		// Pings find a dead connection under a stream that waits for
		// answers; the server allows one every 10s at most.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
	}
	conn, err := grpc.NewClient(cfg.Target, append(opts, cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("client: new: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Client{
		cfg:       cfg,
		logger:    cfg.Logger,
		conn:      conn,
		api:       ingestv1.NewIngestServiceClient(conn),
		runCtx:    runCtx,
		runCancel: cancel,
		wake:      make(chan struct{}, 1),
		deliver:   make(chan struct{}, 1),
		quit:      make(chan struct{}),
		runDone:   make(chan struct{}),
		dispDone:  make(chan struct{}),
		closeDone: make(chan struct{}),
		room:      make(chan struct{}),
		nextSeq:   1,
		batchSize: cfg.BatchSize,
	}
	go c.run()
	go c.dispatch()
	return c, nil
}

// Send hands ev to the client, which sends it in a batch and reports its
// final verdict to Config.OnVerdict. An empty event_id is replaced by a new
// UUIDv7, kept across retries so that the server's deduplication covers
// them; a missing timestamp becomes the current time. After a nil return the
// event belongs to the client and must not be modified.
//
// When the client holds Config.BufferEvents events (or BufferBytes bytes),
// Send blocks until there is room or ctx ends, returning ctx's error. Once
// Close has begun it returns ErrClosed. On an error the event was not taken,
// though its event_id and timestamp may have been filled in: sending it again
// keeps them.
func (c *Client) Send(ctx context.Context, ev *ingestv1.Event) error {
	it, err := prepare(ev, c.cfg.MaxBatchBytes)
	if err != nil {
		return err
	}
	c.mu.Lock()
	for {
		if c.closing {
			c.mu.Unlock()
			return ErrClosed
		}
		if c.fits(it) {
			c.admit(it)
			c.mu.Unlock()
			return nil
		}
		room := c.room
		c.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return fmt.Errorf("client: send: waiting for buffer room: %w", context.Cause(ctx))
		}
		c.mu.Lock()
	}
}

// TrySend is Send without waiting: when the buffer is full it returns
// ErrBufferFull and does not take the event.
func (c *Client) TrySend(ev *ingestv1.Event) error {
	it, err := prepare(ev, c.cfg.MaxBatchBytes)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing:
		return ErrClosed
	case !c.fits(it):
		return ErrBufferFull
	}
	c.admit(it)
	return nil
}

// prepare fills in ev's event_id and timestamp when missing and measures it.
func prepare(ev *ingestv1.Event, maxBytes int) (*item, error) {
	if ev == nil {
		return nil, ErrNilEvent
	}
	if ev.GetEventId() == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("client: send: event id: %w", err)
		}
		ev.EventId = id.String()
	}
	if ev.GetTimestamp() == nil {
		ev.Timestamp = timestamppb.Now()
	}
	// The event's share of a batch: the event and its field tag and length.
	n := proto.Size(ev)
	size := 1 + protowire.SizeVarint(uint64(n)) + n
	if size > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrEventTooLarge, size, maxBytes)
	}
	return &item{ev: ev, size: size}, nil
}

// fits reports whether it can be admitted now. Called with c.mu held.
func (c *Client) fits(it *item) bool {
	return c.held < c.cfg.BufferEvents && c.heldBytes+it.size <= c.cfg.BufferBytes
}

// admit takes it into the queue. Called with c.mu held.
func (c *Client) admit(it *item) {
	c.admitted++
	it.n = c.admitted
	it.readyAt = time.Now()
	c.held++
	c.heldBytes += it.size
	c.queue.push(it)
	// The loop needs to know when a flush timer starts, a batch fills, or
	// a partial batch may go at once.
	if c.queue.len() == 1 || c.queue.len() >= c.batchSize || c.queue.bytes >= c.cfg.MaxBatchBytes ||
		c.flushing > 0 {
		c.nudge()
	}
}

// Flush sends every partial batch at once and returns when every event
// whose Send or TrySend returned before the call has its final verdict,
// delivered to OnVerdict — retries included. When ctx ends first it returns
// an error wrapping ctx's, with the number of those events still waiting;
// they keep going.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.held == 0 {
		c.mu.Unlock()
		return nil
	}
	w := &flushWaiter{upTo: c.admitted, remaining: c.held, done: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	c.flushing++
	c.nudge()
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		c.flushing--
		c.waiters = slices.DeleteFunc(c.waiters, func(x *flushWaiter) bool { return x == w })
		c.mu.Unlock()
	}()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		n := w.remaining
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		return fmt.Errorf("client: flush: %d events without a final verdict: %w", n, context.Cause(ctx))
	}
}

// Close stops taking events (Send returns ErrClosed from now on), flushes,
// and then ends the stream and closes the connection. When ctx ends before
// every event has its final verdict, the remaining events get a Verdict with
// Err ErrAbandoned — they may or may not have been accepted — and Close
// returns an error with their number, wrapping ctx's error. Close returns
// once every verdict has been delivered to OnVerdict. A second Close waits
// for the first and returns ErrClosed.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		select {
		case <-c.closeDone:
		case <-ctx.Done():
		}
		return ErrClosed
	}
	c.closing = true
	c.wakeSenders() // blocked Sends return ErrClosed
	c.nudge()
	c.mu.Unlock()

	abandoned := 0
	ferr := c.Flush(ctx)
	if ferr != nil {
		abandoned = c.abandon()
		// What is left is delivering the verdicts just given.
		_ = c.Flush(context.WithoutCancel(ctx))
	}

	c.mu.Lock()
	c.stopping = true
	c.graceful = abandoned == 0
	c.stopCtx = ctx
	c.nudge()
	c.mu.Unlock()
	if abandoned > 0 {
		c.runCancel()
	}
	select {
	case <-c.runDone:
	case <-ctx.Done():
		c.runCancel()
		<-c.runDone
	}
	c.runCancel()
	c.streams.Wait()
	close(c.quit)
	<-c.dispDone
	cerr := c.conn.Close()
	close(c.closeDone)

	if abandoned > 0 {
		return fmt.Errorf("client: close: %d events had no final verdict: %w", abandoned, context.Cause(ctx))
	}
	if cerr != nil {
		return fmt.Errorf("client: close: %w", cerr)
	}
	return nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.InFlight = c.inFlight
	s.Buffered = c.held
	return s
}

// abandon gives every event without a final verdict the verdict
// ErrAbandoned and returns how many there were.
func (c *Client) abandon() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var items []*item
	items = append(items, c.queue.drain()...)
	items = append(items, c.retryReady.drain()...)
	items = append(items, c.retries...)
	c.retries = nil
	if st := c.cur; st != nil {
		for _, b := range st.inflight {
			items = append(items, b.items...)
		}
		clear(st.inflight)
		c.inFlight = 0
	}
	slices.SortFunc(items, func(a, b *item) int { return cmp.Compare(a.n, b.n) })
	for _, it := range items {
		c.finish(it, Verdict{Err: ErrAbandoned})
	}
	if len(items) > 0 {
		c.logger.Warn("client closed before events had a final verdict", "events", len(items))
	}
	return len(items)
}

// finish records its final verdict and queues it for delivery. Called with
// c.mu held; it must already be out of every queue and batch.
func (c *Client) finish(it *item, v Verdict) {
	v.EventID = it.ev.GetEventId()
	v.Attempts = it.tries
	switch {
	case v.Accepted:
		c.stats.Accepted++
	case v.Err != nil:
		c.stats.GivenUp++
	default:
		c.stats.Rejected++
	}
	c.pending = append(c.pending, delivery{v: v, it: it})
	if len(c.pending) == 1 {
		select {
		case c.deliver <- struct{}{}:
		default:
		}
	}
}

// dispatch delivers final verdicts to OnVerdict, one at a time, and then
// releases their events.
func (c *Client) dispatch() {
	defer close(c.dispDone)
	var spare []delivery
	for {
		c.mu.Lock()
		batch := c.pending
		if len(batch) == 0 {
			c.mu.Unlock()
			select {
			case <-c.deliver:
				continue
			case <-c.quit:
				return
			}
		}
		// Double buffering: spare never shares batch's array.
		c.pending = spare
		c.mu.Unlock()
		if c.cfg.OnVerdict != nil {
			for _, d := range batch {
				c.cfg.OnVerdict(d.v)
			}
		}
		c.mu.Lock()
		for _, d := range batch {
			c.release(d.it)
		}
		c.wakeSenders()
		c.mu.Unlock()
		clear(batch)
		spare = batch[:0]
	}
}

// release forgets an event whose verdict was delivered. Called with c.mu
// held.
func (c *Client) release(it *item) {
	c.held--
	c.heldBytes -= it.size
	if len(c.waiters) == 0 {
		return
	}
	c.waiters = slices.DeleteFunc(c.waiters, func(w *flushWaiter) bool {
		if it.n > w.upTo {
			return false
		}
		w.remaining--
		if w.remaining == 0 {
			close(w.done)
			return true
		}
		return false
	})
}

// wakeSenders wakes the Sends waiting for room. Called with c.mu held.
func (c *Client) wakeSenders() {
	close(c.room)
	c.room = make(chan struct{})
}

// nudge wakes the sender loop. Called with or without c.mu held.
func (c *Client) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
