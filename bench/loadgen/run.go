package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// Backoff of a worker reopening a tenant's stream after it failed.
const (
	reopenBackoffMin = 50 * time.Millisecond
	reopenBackoffMax = 2 * time.Second
	// closeWait is how long a worker waits, after closing its streams' send sides, for the
	// server to end them before it cancels them.
	closeWait = 2 * time.Second
)

// Run sends load as cfg says until cfg.Duration has passed, waits up to cfg.DrainTimeout for
// the answers to the batches in flight, and reports what it measured. progress, when not nil,
// is called every cfg.ProgressInterval, from one goroutine.
//
// A stream that fails with a retryable status (RESOURCE_EXHAUSTED, UNAVAILABLE, ...) is
// counted and reopened with backoff; its unanswered batches are counted as such. Run returns
// an error, with the report so far, when the configuration is invalid, when the server refuses
// the load for good (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, INVALID_ARGUMENT), or
// when ctx ends first.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	cfg = cfg.withDefaults()
	r := &runner{
		cfg:      cfg,
		zipf:     NewZipf(len(cfg.Tenants), cfg.ZipfS),
		pacer:    newPacer(cfg.Rate, cfg.BatchSize),
		rec:      newRecorder(),
		codec:    newRawCodec(),
		counters: make([]atomic.Uint64, len(cfg.Tenants)),
	}
	rep := Report{
		RunID: cfg.RunID, Target: cfg.Target, Tenants: len(cfg.Tenants), Streams: cfg.Streams,
		InFlight: cfg.InFlight, BatchSize: cfg.BatchSize, TargetRate: cfg.Rate,
	}

	// Everything that costs is prepared before the clock starts.
	workers := make([]*worker, cfg.Streams)
	for i := range workers {
		w, err := r.newWorker(i)
		if err != nil {
			for _, w := range workers[:i] {
				_ = w.conn.Close()
			}
			return rep, err
		}
		workers[i] = w
	}
	defer func() {
		for _, w := range workers {
			_ = w.conn.Close()
		}
	}()

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	r.cancelRun = cancelRun
	r.runCtx = runCtx
	r.start = time.Now()
	r.warmupEnd = r.start.Add(cfg.Warmup)
	plannedEnd := r.start.Add(cfg.Duration)
	sendCtx, stopSending := context.WithDeadline(runCtx, plannedEnd)
	defer stopSending()

	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		if progress == nil {
			return
		}
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		last := r.start
		for {
			select {
			case <-stopProgress:
				return
			case now := <-t.C:
				phase := PhaseMeasure
				switch {
				case now.Before(r.warmupEnd):
					phase = PhaseWarmup
				case !now.Before(plannedEnd):
					phase = PhaseDrain
				}
				progress(r.rec.progress(now.Sub(r.start), now.Sub(last), phase))
				last = now
			}
		}
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.sendLoop(sendCtx) })
	}
	<-sendCtx.Done()
	sendEnd := time.Now()
	if sendEnd.After(plannedEnd) {
		sendEnd = plannedEnd
	}
	drainDeadline := time.Now().Add(cfg.DrainTimeout)
	// A server that stops reading can leave a worker blocked in SendMsg by flow control, where
	// no deadline of its own reaches it: canceling every stream is what ends such a run.
	hardStop := time.AfterFunc(cfg.DrainTimeout+2*closeWait, cancelRun)
	defer hardStop.Stop()
	wg.Wait()
	for _, w := range workers {
		wg.Go(func() { w.drain(drainDeadline) })
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone

	rep.Elapsed = time.Since(r.start)
	if sendEnd.After(r.warmupEnd) {
		rep.Window = sendEnd.Sub(r.warmupEnd)
	}
	r.rec.report(&rep)
	if err := r.fatal(); err != nil {
		return rep, err
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("loadgen: run interrupted: %w", err)
	}
	return rep, nil
}

// runner is the state shared by the workers of one Run.
type runner struct {
	cfg      Config
	zipf     *Zipf
	pacer    *pacer
	rec      *recorder
	codec    rawCodec
	counters []atomic.Uint64 // per tenant: the next fresh event id counter

	runCtx    context.Context
	cancelRun context.CancelFunc
	start     time.Time
	warmupEnd time.Time

	fatalMu  sync.Mutex
	fatalErr error
}

// fail ends the run with err (the first one wins).
func (r *runner) fail(err error) {
	r.fatalMu.Lock()
	if r.fatalErr == nil {
		r.fatalErr = err
	}
	r.fatalMu.Unlock()
	r.cancelRun()
}

func (r *runner) fatal() error {
	r.fatalMu.Lock()
	defer r.fatalMu.Unlock()
	return r.fatalErr
}

// permanent reports whether a stream error means the run cannot succeed by retrying.
func permanent(c codes.Code) bool {
	switch c {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument:
		return true
	}
	return false
}

// slot is one of a worker's InFlight batch buffers.
type slot struct {
	tmpl     *batchTemplate
	seq      uint64
	sentAt   time.Time
	measured bool
}

// worker owns one connection, a stream per tenant it has sent to, and InFlight batches.
// Only its own goroutine sends; a receiver goroutine per stream takes the answers.
type worker struct {
	r       *runner
	id      int
	conn    *grpc.ClientConn
	rng     *rand.Rand
	free    chan *slot // batches ready to be sent; the worker holds all of them when idle
	streams []*tenantStream
	backoff []time.Duration
	retryAt []time.Time
	ids     []uint64
	dup     []bool
	seq     uint64
}

func (r *runner) newWorker(id int) (*worker, error) {
	cfg := r.cfg
	conn, err := grpc.NewClient(cfg.Target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("abacus-loadgen"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connect to %s: %w", cfg.Target, err)
	}
	conn.Connect()
	w := &worker{
		r:       r,
		id:      id,
		conn:    conn,
		rng:     rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		free:    make(chan *slot, cfg.InFlight),
		streams: make([]*tenantStream, len(cfg.Tenants)),
		backoff: make([]time.Duration, len(cfg.Tenants)),
		retryAt: make([]time.Time, len(cfg.Tenants)),
		ids:     make([]uint64, cfg.BatchSize),
		dup:     make([]bool, cfg.BatchSize),
	}
	for range cfg.InFlight {
		w.free <- &slot{tmpl: newBatchTemplate(w.rng, cfg.RunID, cfg.BatchSize)}
	}
	return w, nil
}

// sendLoop sends batches until ctx ends.
func (w *worker) sendLoop(ctx context.Context) {
	for {
		var s *slot
		select {
		case s = <-w.free:
		case <-ctx.Done():
			return
		}
		if w.r.pacer.wait(ctx) != nil {
			w.free <- s
			return
		}
		tenant := w.r.zipf.Pick(w.rng)
		ts, err := w.stream(ctx, tenant)
		if err != nil {
			w.free <- s
			continue
		}
		w.send(ts, tenant, s)
	}
}

// send fills s for tenant and sends it on ts.
func (w *worker) send(ts *tenantStream, tenant int, s *slot) {
	cfg := w.r.cfg
	n := s.tmpl.events()
	dups := w.assignIDs(tenant, n)
	w.seq++
	b := s.tmpl.rewrite(tenant, w.ids[:n], time.Now().Unix(), w.rng, cfg.Users, w.seq)
	s.seq = w.seq
	s.sentAt = time.Now()
	s.measured = !s.sentAt.Before(w.r.warmupEnd)
	if !ts.add(s) {
		w.free <- s // the stream failed since w.stream returned it
		return
	}
	w.r.rec.sent(n, dups, s.measured)
	if err := ts.cs.SendMsg(rawBatch(b)); err != nil && !errors.Is(err, io.EOF) {
		// io.EOF means the stream ended; its receiver learns why and releases the batches.
		// Anything else is local: end the stream so that the receiver does the same.
		w.r.rec.protocolError(fmt.Sprintf("send: %v", err))
		ts.cancel()
	}
}

// assignIDs fills w.ids[:n] with event id counters of tenant: fresh ones, and for about
// DuplicateRatio of the events one already used. It returns the number of duplicates.
func (w *worker) assignIDs(tenant, n int) int {
	counter := &w.r.counters[tenant]
	ratio := w.r.cfg.DuplicateRatio
	if ratio == 0 {
		base := counter.Add(uint64(n)) - uint64(n)
		for i := range n {
			w.ids[i] = base + uint64(i)
		}
		return 0
	}
	used := counter.Load()
	dups := 0
	for i := range n {
		w.dup[i] = used > 0 && w.rng.Float64() < ratio
		if w.dup[i] {
			dups++
		}
	}
	fresh := uint64(n - dups)
	next := counter.Add(fresh) - fresh
	for i := range n {
		if w.dup[i] {
			w.ids[i] = w.rng.Uint64N(used)
		} else {
			w.ids[i] = next
			next++
		}
	}
	return dups
}

// stream returns the worker's open stream to tenant, opening it (after the backoff of an
// earlier failure) when there is none.
func (w *worker) stream(ctx context.Context, tenant int) (*tenantStream, error) {
	if ts := w.streams[tenant]; ts != nil {
		failed, answered := ts.state()
		if !failed {
			return ts, nil
		}
		w.streams[tenant] = nil
		if answered {
			w.backoff[tenant] = 0
		}
		w.backoff[tenant] = min(max(2*w.backoff[tenant], reopenBackoffMin), reopenBackoffMax)
		jitter := time.Duration(w.rng.Int64N(int64(w.backoff[tenant]) / 2))
		w.retryAt[tenant] = time.Now().Add(w.backoff[tenant]/2 + jitter)
	}
	if d := time.Until(w.retryAt[tenant]); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	key := w.r.cfg.Tenants[tenant]
	sctx, cancel := context.WithCancel(w.r.runCtx)
	sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+key.Secret)
	cs, err := w.conn.NewStream(sctx, &ingestv1.IngestService_ServiceDesc.Streams[0],
		ingestv1.IngestService_IngestStream_FullMethodName, grpc.ForceCodecV2(w.r.codec))
	if err != nil {
		cancel()
		w.r.streamEnded(key, err)
		w.backoff[tenant] = min(max(2*w.backoff[tenant], reopenBackoffMin), reopenBackoffMax)
		w.retryAt[tenant] = time.Now().Add(w.backoff[tenant])
		return nil, err
	}
	w.r.rec.streamOpened()
	ts := &tenantStream{w: w, key: key, cs: cs, cancel: cancel, pending: map[uint64]*slot{}, done: make(chan struct{})}
	w.streams[tenant] = ts
	go ts.receive()
	return ts, nil
}

// drain waits until every batch of the worker is answered or deadline passes, then closes
// the worker's streams. Batches still unanswered then are counted as such.
func (w *worker) drain(deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var held []*slot
wait:
	for len(held) < w.r.cfg.InFlight {
		select {
		case s := <-w.free:
			held = append(held, s)
		case <-t.C:
			break wait
		case <-w.r.runCtx.Done():
			break wait
		}
	}
	for _, ts := range w.streams {
		if ts != nil {
			ts.closing.Store(true)
			_ = ts.cs.CloseSend()
		}
	}
	closeBy := time.NewTimer(closeWait)
	defer closeBy.Stop()
	for _, ts := range w.streams {
		if ts == nil {
			continue
		}
		select {
		case <-ts.done:
		case <-closeBy.C:
			closeBy.Reset(0) // the rest are canceled at once
			ts.cancel()
			<-ts.done
		}
		ts.cancel()
	}
}

// streamEnded records a stream that could not be opened or ended with err, and ends the run
// when retrying cannot help.
func (r *runner) streamEnded(key TenantKey, err error) {
	if r.runCtx.Err() != nil {
		return // the run is stopping: cancellations are ours
	}
	st := status.Convert(err)
	r.rec.streamFailed(st.Code(), fmt.Errorf("tenant %s: %s: %s", key.Tenant, st.Code(), st.Message()))
	if permanent(st.Code()) {
		r.fail(fmt.Errorf("loadgen: tenant %s: stream refused: %w", key.Tenant, err))
	}
}

// tenantStream is one IngestStream of a worker, authenticated as one tenant.
type tenantStream struct {
	w       *worker
	key     TenantKey
	cs      grpc.ClientStream
	cancel  context.CancelFunc
	closing atomic.Bool // the worker closed the send side: an end of stream is expected
	done    chan struct{}

	mu       sync.Mutex
	pending  map[uint64]*slot // by sequence; nil once the stream failed
	answered bool
}

// add registers s as sent, unless the stream has failed.
func (ts *tenantStream) add(s *slot) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.pending == nil {
		return false
	}
	ts.pending[s.seq] = s
	return true
}

func (ts *tenantStream) take(seq uint64) *slot {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s := ts.pending[seq]
	delete(ts.pending, seq)
	if s != nil {
		ts.answered = true
	}
	return s
}

// state reports whether the stream has failed and whether it ever got an answer.
func (ts *tenantStream) state() (failed, answered bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.pending == nil, ts.answered
}

// receive takes the stream's responses until it ends.
func (ts *tenantStream) receive() {
	defer close(ts.done)
	r := ts.w.r
	resp := new(ingestv1.IngestStreamResponse)
	for {
		err := ts.cs.RecvMsg(resp)
		now := time.Now()
		if err != nil {
			ts.end(err)
			return
		}
		s := ts.take(resp.GetSequence())
		if s == nil {
			r.rec.protocolError(fmt.Sprintf("tenant %s: response for unknown sequence %d", ts.key.Tenant, resp.GetSequence()))
			continue
		}
		r.rec.answered(resp, now.Sub(s.sentAt), s.measured)
		ts.w.free <- s
	}
}

// end fails the stream: the failure is recorded first (so that a permanent one ends the run
// before the worker can see the stream gone and reopen it), then its unanswered batches are
// counted and given back to the worker.
func (ts *tenantStream) end(err error) {
	r := ts.w.r
	ts.mu.Lock()
	unanswered := len(ts.pending)
	ts.mu.Unlock()
	switch {
	case errors.Is(err, io.EOF) && ts.closing.Load():
		if unanswered > 0 {
			r.rec.protocolError(fmt.Sprintf("tenant %s: stream ended with %d batches unanswered", ts.key.Tenant, unanswered))
		}
	case errors.Is(err, io.EOF):
		r.rec.protocolError(fmt.Sprintf("tenant %s: server ended the stream", ts.key.Tenant))
	case ts.closing.Load() && status.Code(err) == codes.Canceled:
		// canceled by drain after its wait
	default:
		r.streamEnded(ts.key, err)
	}

	ts.mu.Lock()
	pending := ts.pending
	ts.pending = nil
	ts.mu.Unlock()
	ts.cancel()
	// Sorted, so that a run with a fixed seed gives back its buffers in a fixed order.
	seqs := make([]uint64, 0, len(pending))
	for seq := range pending {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		s := pending[seq]
		// gRPC may still hold the bytes of a batch sent on a failed stream: give the slot a
		// buffer of its own rather than rewrite them.
		s.tmpl.detach()
		r.rec.unanswered(s.tmpl.events(), s.measured)
		ts.w.free <- s
	}
}
