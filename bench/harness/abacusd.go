package harness

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Bounds of the waits for abacusd.
const (
	// ReadyTimeout bounds the wait for a child to be ready.
	ReadyTimeout = time.Minute
	// StopGrace is how long a child may take to stop gracefully before it is killed.
	StopGrace = 30 * time.Second
)

// Abacusd is a running `abacusd serve`.
type Abacusd struct {
	*Child
	// GRPCAddr and HTTPAddr are the loopback addresses it listens on.
	GRPCAddr string
	HTTPAddr string
}

// StartAbacusd runs `abacusd serve` with roles (comma-separated) and env, logging to
// abacusd-<roles>.log in workDir, and waits until its gRPC health check answers SERVING.
func StartAbacusd(ctx context.Context, bin, roles string, env []string, workDir string) (*Abacusd, error) {
	grpcAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(env[:len(env):len(env)], "ABACUS_ROLES="+roles, "ABACUS_GRPC_ADDR="+grpcAddr, "ABACUS_HTTP_ADDR="+httpAddr)
	logName := "abacusd-" + strings.ReplaceAll(roles, ",", "-") + ".log"
	c, err := StartChild("abacusd "+roles, cmd, filepath.Join(workDir, logName))
	if err != nil {
		return nil, err
	}
	if err := waitServing(ctx, c, grpcAddr); err != nil {
		_ = c.Terminate(StopGrace)
		return nil, fmt.Errorf("abacusd %s: %w\n%s", roles, err, c.LogTail())
	}
	return &Abacusd{Child: c, GRPCAddr: grpcAddr, HTTPAddr: httpAddr}, nil
}

// waitServing polls the gRPC health service at addr until it answers SERVING.
func waitServing(ctx context.Context, c *Child, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	for {
		if exited, err := c.Exited(); exited {
			return fmt.Errorf("exited before it was ready: %v", err)
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("not ready within %s: %w", ReadyTimeout, err)
		}
	}
}

// WithAdmin runs an admin-only abacusd for as long as fn runs, with a gRPC connection to it.
// fn's error comes back with the end of abacusd's log.
func WithAdmin(ctx context.Context, bin string, env []string, workDir string, fn func(ctx context.Context, conn *grpc.ClientConn) error) error {
	admin, err := StartAbacusd(ctx, bin, "admin", env, workDir)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Terminate(StopGrace) }()
	conn, err := grpc.NewClient(admin.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := fn(ctx, conn); err != nil {
		return fmt.Errorf("%w\nabacusd admin log:\n%s", err, admin.LogTail())
	}
	return nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	return addr, lis.Close()
}

// Sleep waits for d or until ctx ends, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
