package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// Latency histograms hold microseconds from 1 µs to 60 s with 3 significant digits; slower
// answers are recorded as 60 s.
const (
	histLowest  = 1
	histHighest = int64(60 * time.Second / time.Microsecond)
	histDigits  = 3
	// maxErrorSamples is how many distinct error messages a report keeps.
	maxErrorSamples = 10
)

// Counts are the outcomes of a set of batches.
type Counts struct {
	// Batches and Events were sent.
	Batches int64 `json:"batches"`
	Events  int64 `json:"events"`
	// Duplicates are the events sent with an id already used for the same tenant.
	Duplicates int64 `json:"duplicates"`
	// Answered is the number of batches whose response arrived.
	Answered int64 `json:"answered_batches"`
	// Accepted and Rejected are events, as the responses counted them. Rejected includes
	// Throttled.
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	// Throttled are the rejected events with reason RATE_LIMITED or QUOTA_EXHAUSTED.
	Throttled int64 `json:"throttled"`
	// Unanswered are the events of batches that got no response: their stream failed, or the
	// drain after the run timed out.
	Unanswered int64 `json:"unanswered"`
	// RejectedByReason counts rejected events by RejectReason name.
	RejectedByReason map[string]int64 `json:"rejected_by_reason,omitempty"`
}

func (c *Counts) addResponse(resp *ingestv1.IngestStreamResponse) {
	c.Answered++
	c.Accepted += int64(resp.GetAccepted())
	for _, r := range resp.GetRejected() {
		c.Rejected++
		reason := r.GetReason()
		if reason == ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED || reason == ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED {
			c.Throttled++
		}
		if c.RejectedByReason == nil {
			c.RejectedByReason = map[string]int64{}
		}
		c.RejectedByReason[reason.String()]++
	}
}

// Latency summarizes batch-ack latencies: from sending a batch to receiving its response.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(h.ValueAtPercentile(50)),
		P90:   us(h.ValueAtPercentile(90)),
		P99:   us(h.ValueAtPercentile(99)),
		P999:  us(h.ValueAtPercentile(99.9)),
		Max:   us(h.Max()),
	}
}

// Report is the outcome of a [Run]. Durations are in nanoseconds in its JSON form.
type Report struct {
	RunID      string  `json:"run_id"`
	Target     string  `json:"target"`
	Tenants    int     `json:"tenants"`
	Streams    int     `json:"streams"`
	InFlight   int     `json:"in_flight"`
	BatchSize  int     `json:"batch_size"`
	TargetRate float64 `json:"target_rate"`
	// Elapsed is the whole run: warmup, measured window and drain.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Window is the measured part: from the end of the warmup to the end of sending.
	Window time.Duration `json:"window_ns"`
	// Total counts every batch of the run; Measured those sent within Window (their answers
	// may arrive during the drain).
	Total    Counts `json:"total"`
	Measured Counts `json:"measured"`
	// SentPerSecond and AcceptedPerSecond are Measured events over Window.
	SentPerSecond     float64 `json:"sent_per_second"`
	AcceptedPerSecond float64 `json:"accepted_per_second"`
	// Latency is the batch-ack latency of the measured batches that were answered.
	Latency Latency `json:"latency"`
	// StreamOpens counts the streams opened, StreamErrors the streams that ended with an
	// error, by gRPC code.
	StreamOpens  int64            `json:"stream_opens"`
	StreamErrors map[string]int64 `json:"stream_errors,omitempty"`
	// Errors counts stream errors and protocol errors (a response for an unknown sequence);
	// ErrorSamples keeps the first distinct messages.
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// WriteText writes the report for people.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	rate := "as fast as possible"
	if r.TargetRate > 0 {
		rate = fmt.Sprintf("%s events/s", group(int64(r.TargetRate)))
	}
	fmt.Fprintf(&b, "run %s → %s: %d tenants, %d streams × %d in flight, batches of %d, rate %s\n",
		r.RunID, r.Target, r.Tenants, r.Streams, r.InFlight, r.BatchSize, rate)
	fmt.Fprintf(&b, "elapsed %s, measured window %s\n", r.Elapsed.Round(time.Millisecond), r.Window.Round(time.Millisecond))
	fmt.Fprintf(&b, "\nmeasured window\n")
	fmt.Fprintf(&b, "  accepted            %s events/s\n", group(int64(r.AcceptedPerSecond)))
	fmt.Fprintf(&b, "  sent                %s events/s\n", group(int64(r.SentPerSecond)))
	writeCounts(&b, r.Measured)
	fmt.Fprintf(&b, "  batch-ack latency   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d batches)\n",
		ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.P999), ms(r.Latency.Max), r.Latency.Count)
	fmt.Fprintf(&b, "\nwhole run (warmup and drain included)\n")
	writeCounts(&b, r.Total)
	fmt.Fprintf(&b, "  streams opened      %d\n", r.StreamOpens)
	if len(r.StreamErrors) > 0 {
		fmt.Fprintf(&b, "  stream errors       %s\n", formatMap(r.StreamErrors))
	}
	fmt.Fprintf(&b, "  errors              %d\n", r.Errors)
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(&b, "    %s\n", s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCounts(b *strings.Builder, c Counts) {
	fmt.Fprintf(b, "  batches             %s sent, %s answered\n", group(c.Batches), group(c.Answered))
	fmt.Fprintf(b, "  events              %s sent (%s duplicates), %s accepted, %s rejected (%s throttled), %s unanswered\n",
		group(c.Events), group(c.Duplicates), group(c.Accepted), group(c.Rejected), group(c.Throttled), group(c.Unanswered))
	if len(c.RejectedByReason) > 0 {
		fmt.Fprintf(b, "  rejected by reason  %s\n", formatMap(c.RejectedByReason))
	}
}

func formatMap(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// group formats n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Phase is the part of a run a [Progress] was taken in.
type Phase string

// The phases of a run.
const (
	PhaseWarmup  Phase = "warmup"
	PhaseMeasure Phase = "measure"
	PhaseDrain   Phase = "drain"
)

// Progress is a snapshot of a running [Run], taken every Config.ProgressInterval.
type Progress struct {
	Elapsed time.Duration
	Phase   Phase
	// SentPerSecond and AcceptedPerSecond are events over the last interval.
	SentPerSecond     float64
	AcceptedPerSecond float64
	// Accepted, Rejected and Throttled are events since the start.
	Accepted  int64
	Rejected  int64
	Throttled int64
	// InFlight is the number of batches sent and not yet answered.
	InFlight int64
	// P50 and P99 are the batch-ack latencies of the last interval.
	P50 time.Duration
	P99 time.Duration
	// Errors counts stream and protocol errors since the start.
	Errors int64
}

// String formats the progress as one line.
func (p Progress) String() string {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return fmt.Sprintf("%6.1fs %-7s sent %9s/s accepted %9s/s  total accepted %s rejected %s throttled %s  in flight %d  p50 %.1fms p99 %.1fms  errors %d",
		p.Elapsed.Seconds(), p.Phase, group(int64(p.SentPerSecond)), group(int64(p.AcceptedPerSecond)),
		group(p.Accepted), group(p.Rejected), group(p.Throttled), p.InFlight, ms(p.P50), ms(p.P99), p.Errors)
}

// recorder collects the outcomes of every batch. Batches come and go a few thousand times a
// second at most, so one mutex is cheap enough.
type recorder struct {
	mu        sync.Mutex
	total     Counts
	measured  Counts
	hist      *hdrhistogram.Histogram // measured batches
	tick      *hdrhistogram.Histogram // answers since the last progress
	tickSent  int64
	tickAcc   int64
	inFlight  int64
	opens     int64
	streamErr map[string]int64
	errors    int64
	samples   []string
}

func newRecorder() *recorder {
	return &recorder{
		hist: hdrhistogram.New(histLowest, histHighest, histDigits),
		tick: hdrhistogram.New(histLowest, histHighest, histDigits),
	}
}

// sent records a batch handed to gRPC.
func (r *recorder) sent(events, dups int, measured bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight++
	r.tickSent += int64(events)
	for _, c := range r.counts(measured) {
		c.Batches++
		c.Events += int64(events)
		c.Duplicates += int64(dups)
	}
}

// answered records the response to a batch sent latency ago.
func (r *recorder) answered(resp *ingestv1.IngestStreamResponse, latency time.Duration, measured bool) {
	us := min(max(latency.Microseconds(), histLowest), histHighest)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	r.tickAcc += int64(resp.GetAccepted())
	_ = r.tick.RecordValue(us) // in range by construction
	if measured {
		_ = r.hist.RecordValue(us)
	}
	for _, c := range r.counts(measured) {
		c.addResponse(resp)
	}
}

// unanswered records a batch whose response will never come.
func (r *recorder) unanswered(events int, measured bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	for _, c := range r.counts(measured) {
		c.Unanswered += int64(events)
	}
}

func (r *recorder) counts(measured bool) []*Counts {
	if measured {
		return []*Counts{&r.total, &r.measured}
	}
	return []*Counts{&r.total}
}

func (r *recorder) streamOpened() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opens++
}

// streamFailed records a stream that ended with err.
func (r *recorder) streamFailed(code codes.Code, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streamErr == nil {
		r.streamErr = map[string]int64{}
	}
	r.streamErr[code.String()]++
	r.addErrorLocked(err.Error())
}

// protocolError records a response the generator cannot place.
func (r *recorder) protocolError(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addErrorLocked(msg)
}

func (r *recorder) addErrorLocked(msg string) {
	r.errors++
	if len(r.samples) < maxErrorSamples && !slices.Contains(r.samples, msg) {
		r.samples = append(r.samples, msg)
	}
}

// progress returns the state since the last call and starts a new interval.
func (r *recorder) progress(elapsed, interval time.Duration, phase Phase) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := interval.Seconds()
	p := Progress{
		Elapsed:           elapsed,
		Phase:             phase,
		SentPerSecond:     float64(r.tickSent) / secs,
		AcceptedPerSecond: float64(r.tickAcc) / secs,
		Accepted:          r.total.Accepted,
		Rejected:          r.total.Rejected,
		Throttled:         r.total.Throttled,
		InFlight:          r.inFlight,
		P50:               time.Duration(r.tick.ValueAtPercentile(50)) * time.Microsecond,
		P99:               time.Duration(r.tick.ValueAtPercentile(99)) * time.Microsecond,
		Errors:            r.errors,
	}
	r.tick.Reset()
	r.tickSent, r.tickAcc = 0, 0
	return p
}

// report fills the counters of rep.
func (r *recorder) report(rep *Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep.Total = cloneCounts(r.total)
	rep.Measured = cloneCounts(r.measured)
	rep.Latency = latencyOf(r.hist)
	rep.StreamOpens = r.opens
	rep.StreamErrors = maps.Clone(r.streamErr)
	rep.Errors = r.errors
	rep.ErrorSamples = slices.Clone(r.samples)
	if secs := rep.Window.Seconds(); secs > 0 {
		rep.SentPerSecond = float64(rep.Measured.Events) / secs
		rep.AcceptedPerSecond = float64(rep.Measured.Accepted) / secs
	}
}

func cloneCounts(c Counts) Counts {
	c.RejectedByReason = maps.Clone(c.RejectedByReason)
	return c
}
