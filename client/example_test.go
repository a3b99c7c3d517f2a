package client_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/abacus-analytics/abacus/client"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// A tenant application creates one Client at startup, sends events as they
// happen, and closes the client on shutdown so that nothing queued is lost.
func Example() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		Target: "ingest.abacus.example:443", // TLS with the system's roots
		APIKey: os.Getenv("ABACUS_API_KEY"),
		OnVerdict: func(v client.Verdict) {
			switch {
			case v.Accepted:
			case v.Err != nil:
				log.Printf("event %s given up after %d attempts: %v", v.EventID, v.Attempts, v.Err)
			default:
				log.Printf("event %s rejected: %v: %s", v.EventID, v.Reason, v.Message)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			log.Print(err)
		}
	}()

	// event_id (a UUIDv7) and timestamp are filled in by Send.
	err = c.Send(ctx, &ingestv1.Event{
		Type:       "page_view",
		UserId:     "user-42",
		Properties: map[string]string{"path": "/pricing"},
	})
	if err != nil {
		log.Print(err)
	}
}

// A batch job sends its events and waits, with a deadline, until each has
// its final verdict before it reports success.
func ExampleClient_Flush() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		Target:    "ingest.abacus.example:443",
		APIKey:    os.Getenv("ABACUS_API_KEY"),
		BatchSize: 2000,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close(ctx) }()

	for i := range 10000 {
		v := float64(i)
		ev := &ingestv1.Event{Type: "invoice.paid", UserId: "billing", Value: &v}
		if err := c.Send(ctx, ev); err != nil {
			log.Fatal(err)
		}
	}
	flushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Flush(flushCtx); err != nil {
		log.Fatalf("not every event has a verdict yet: %v", err)
	}
	s := c.Stats()
	log.Printf("accepted %d, rejected %d, given up %d", s.Accepted, s.Rejected, s.GivenUp)
}
