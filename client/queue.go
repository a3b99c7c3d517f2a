package client

import (
	"container/heap"
	"time"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// item is one event held by the client. It is in exactly one place at a
// time: the queue, the retry heap, a batch in flight, or the verdicts
// awaiting delivery; every move happens under Client.mu.
type item struct {
	ev    *ingestv1.Event
	n     uint64 // admission order, for Flush
	size  int    // encoded bytes
	tries int    // times sent

	// readyAt is when the item became ready to send (queued or retry delay
	// passed); the flush interval counts from it.
	readyAt time.Time
}

// fifo is a queue of items ready to send, with their total size.
type fifo struct {
	items []*item
	head  int
	bytes int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(it *item) {
	q.items = append(q.items, it)
	q.bytes += it.size
}

func (q *fifo) peek() *item { return q.items[q.head] }

func (q *fifo) pop() *item {
	it := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	q.bytes -= it.size
	// Reuse the backing array once the consumed prefix dominates, so a
	// long-lived queue does not keep growing.
	if q.head > 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return it
}

// drain removes and returns every item.
func (q *fifo) drain() []*item {
	out := q.items[q.head:]
	*q = fifo{}
	return out
}

// retryHeap holds items waiting for their retry delay, earliest first (then
// in admission order).
type retryHeap []*item

func (h retryHeap) Len() int { return len(h) }
func (h retryHeap) Less(i, j int) bool {
	if !h[i].readyAt.Equal(h[j].readyAt) {
		return h[i].readyAt.Before(h[j].readyAt)
	}
	return h[i].n < h[j].n
}
func (h retryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// promote moves the items whose delay has passed into ready, earliest first.
func (h *retryHeap) promote(now time.Time, ready *fifo) {
	for h.Len() > 0 && !(*h)[0].readyAt.After(now) {
		ready.push(heap.Pop(h).(*item))
	}
}
