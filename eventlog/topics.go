package eventlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics creates [Topic] and [DeadLetterTopic] with the given number of
// partitions and replication factor when they do not exist yet; existing
// topics are left as they are. -1 for either means the broker's default.
// The work is bounded by ctx.
func EnsureTopics(ctx context.Context, brokers []string, partitions int32, replication int16) error {
	if len(brokers) == 0 {
		return errors.New("eventlog: ensure topics: no brokers")
	}
	if partitions == 0 || partitions < -1 {
		return fmt.Errorf("eventlog: ensure topics: partitions is %d, must be positive or -1 (broker default)", partitions)
	}
	if replication == 0 || replication < -1 {
		return fmt.Errorf("eventlog: ensure topics: replication is %d, must be positive or -1 (broker default)", replication)
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("eventlog: ensure topics: %w", err)
	}
	defer client.Close()

	resps, err := kadm.NewClient(client).CreateTopics(ctx, partitions, replication, nil, Topic, DeadLetterTopic)
	if err != nil {
		return fmt.Errorf("eventlog: ensure topics: %w", err)
	}
	var errs []error
	for _, topic := range []string{Topic, DeadLetterTopic} {
		r, ok := resps[topic]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("eventlog: ensure topics: no answer for topic %s", topic))
		case r.Err == nil, errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			errs = append(errs, fmt.Errorf("eventlog: ensure topics: create %s: %w (%s)", topic, r.Err, r.ErrMessage))
		}
	}
	return errors.Join(errs...)
}
