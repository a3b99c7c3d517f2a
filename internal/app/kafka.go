package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/internal/config"
)

// ensureTopics creates the event topics, retrying for a while so that abacusd and a broker
// started together do not race.
func ensureTopics(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	backoff := 250 * time.Millisecond
	for {
		err := eventlog.EnsureTopics(ctx, cfg.KafkaBrokers, int32(cfg.KafkaPartitions), int16(cfg.KafkaReplication))
		if err == nil {
			return nil
		}
		logger.WarnContext(ctx, "kafka topics not ready; retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("create kafka topics: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
