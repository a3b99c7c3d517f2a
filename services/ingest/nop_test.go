package ingest

import (
	"context"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

type nopProducer struct{}

func (nopProducer) Produce(context.Context, tenancy.ID, *eventlogv1.Batch) error { return nil }
