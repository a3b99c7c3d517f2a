package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka-protocol broker (kfake) listening on
// 127.0.0.1. Clients use the same franz-go-over-TCP path as against a real
// cluster. It is for development and tests only: it is not a Kafka
// replacement and must never back a production deployment.
type Kafka struct {
	logger *slog.Logger
	dir    string
	opts   []kfake.Opt // the caller's, applied again on Restart

	mu      sync.Mutex
	cluster *kfake.Cluster
	ports   []int
	brokers []string
	lock    *os.File
}

// StartKafka runs an in-process kfake cluster with one broker (callers may
// pass kfake.NumBrokers for more when memory-only and port is 0).
// dir=="" means memory only; otherwise state is persisted with
// kfake.DataDir(dir) and reloaded by the next start on dir. port==0 picks a
// free port (and for a dir, reuses the port recorded there if free). The
// caller's opts apply after the defaults, so they can override the logger,
// partitions, topic auto-creation and so on. ctx is only checked: kfake
// starts synchronously.
func StartKafka(ctx context.Context, dir string, port int, logger *slog.Logger, opts ...kfake.Opt) (*Kafka, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &Kafka{logger: logger, opts: opts}
	pinned := port != 0
	reused := false
	if dir != "" {
		var err error
		if k.dir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("start kafka: %w", err)
		}
		if err := os.MkdirAll(k.dir, 0o755); err != nil {
			return nil, fmt.Errorf("start kafka: %w", err)
		}
		if k.lock, err = lockDir(k.dir); err != nil {
			return nil, fmt.Errorf("start kafka: %w", err)
		}
		if port == 0 {
			if port, reused, err = choosePort(k.dir); err != nil {
				unlockDir(k.lock)
				return nil, fmt.Errorf("start kafka: %w", err)
			}
		}
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	var ports []int
	if port != 0 {
		ports = []int{port}
	}
	err := k.startLocked(ports)
	if err != nil && !pinned && port != 0 {
		// The recorded or chosen port was taken in the meantime.
		reused = false
		err = k.startLocked(nil)
	}
	if err == nil && k.dir != "" {
		err = writePortFile(k.dir, k.ports[0])
	}
	if err != nil {
		if k.cluster != nil {
			k.cluster.Close()
		}
		unlockDir(k.lock)
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	logger.Info("in-process Kafka-protocol development broker started; for development and tests only, not for production",
		"brokers", k.brokers, "data_dir", k.dir, "persistent", k.dir != "", "port_reused", reused)
	return k, nil
}

// Brokers returns the seed addresses of the cluster's brokers.
func (k *Kafka) Brokers() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.brokers...)
}

// Cluster returns the running kfake cluster, for its fault-injection and
// control functions. Restart replaces it; Stop closes it.
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}

// Stop closes the cluster, persisting its state when it has a directory.
// Stopping a stopped cluster is a no-op.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
	unlockDir(k.lock)
	k.lock = nil
}

// Restart closes the cluster if it runs and starts a new one on the same
// ports and directory. With a directory, topics, records and committed
// offsets survive; memory-only clusters come back empty.
func (k *Kafka) Restart(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("restart kafka: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
	if k.dir != "" && k.lock == nil {
		lock, err := lockDir(k.dir)
		if err != nil {
			return fmt.Errorf("restart kafka: %w", err)
		}
		k.lock = lock
	}
	if err := k.startLocked(k.ports); err != nil {
		return fmt.Errorf("restart kafka: %w", err)
	}
	k.logger.Info("in-process Kafka-protocol development broker restarted; for development and tests only, not for production",
		"brokers", k.brokers, "data_dir", k.dir)
	return nil
}

func (k *Kafka) stopLocked() {
	if k.cluster == nil {
		return
	}
	k.cluster.Close()
	k.cluster = nil
	k.logger.Info("in-process Kafka-protocol development broker stopped", "brokers", k.brokers)
}

func (k *Kafka) startLocked(ports []int) error {
	all := []kfake.Opt{kfake.NumBrokers(1), kfake.WithLogger(kfakeLogger{k.logger})}
	all = append(all, k.opts...)
	if k.dir != "" {
		all = append(all, kfake.DataDir(k.dir))
	}
	if len(ports) > 0 {
		all = append(all, kfake.Ports(ports...))
	}
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return err
	}
	brokers := c.ListenAddrs()
	gotPorts := make([]int, 0, len(brokers))
	for _, addr := range brokers {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			c.Close()
			return fmt.Errorf("broker address %q: %w", addr, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			c.Close()
			return fmt.Errorf("broker address %q: %w", addr, err)
		}
		gotPorts = append(gotPorts, n)
	}
	k.cluster, k.brokers, k.ports = c, brokers, gotPorts
	return nil
}

// kfakeLogger sends kfake's log lines to slog. kfake logs every request at
// info level, which is debug-level detail for us.
type kfakeLogger struct{ logger *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	detail := lazySprintf{format: format, args: args}
	switch level {
	case kfake.LogLevelError:
		l.logger.Error("kafka broker error", "detail", detail)
	case kfake.LogLevelWarn:
		l.logger.Warn("kafka broker warning", "detail", detail)
	default:
		l.logger.Debug("kafka broker", "detail", detail)
	}
}

// lazySprintf formats only if a handler actually records the line.
type lazySprintf struct {
	format string
	args   []any
}

func (s lazySprintf) LogValue() slog.Value {
	return slog.StringValue(fmt.Sprintf(s.format, s.args...))
}
