package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Identifiers of the refusal AuthFailureGuard answers with.
const (
	// ErrorDomain is the domain of the ErrorInfo details this package
	// attaches.
	ErrorDomain = "abacus.dev"
	// ReasonAuthRateLimited is the ErrorInfo reason of a call refused
	// because its address had too many failed authentications.
	ReasonAuthRateLimited = "AUTH_RATE_LIMITED"
)

// authFailureKind is the bucket kind (and metric label) of failed
// authentications.
const authFailureKind = "auth_failures"

// Sizes of AuthFailureGuard's memory: one entry per address. Addresses are
// chosen by clients, so both are bounded; an evicted entry only means that
// the next call from that address is looked at again.
const (
	blockedAddrs     = 65536
	authLocalBuckets = 65536
)

// healthServicePrefix starts the methods of grpc.health.v1.Health, which
// AuthFailureGuard never refuses.
const healthServicePrefix = "/grpc.health.v1.Health/"

// AuthFailureConfig configures an [AuthFailureGuard]. Start from
// [DefaultAuthFailureConfig]: the zero value of TrustForwardedFromLoopback is
// false.
type AuthFailureConfig struct {
	// Limit is the budget of failed authentications per client address: a
	// burst, refilled at a sustained rate (default 1 per second, burst 20).
	// A zero Limit selects the default.
	Limit Limit
	// TrustForwardedFromLoopback keys calls from a loopback peer by the last
	// x-forwarded-for entry (default true): our REST gateway dials the gRPC
	// server over loopback and appends the HTTP client's address there.
	// Disable it when untrusted local processes can call the gRPC port.
	TrustForwardedFromLoopback bool
}

// DefaultAuthFailureConfig returns the defaults: 20 failed authentications
// at once per address, then one per second, and x-forwarded-for trusted from
// loopback peers.
func DefaultAuthFailureConfig() AuthFailureConfig {
	return AuthFailureConfig{Limit: Limit{Rate: 1, Burst: 20}, TrustForwardedFromLoopback: true}
}

// AuthFailureGuard limits failed authentications per client address, in
// front of the auth interceptor, so that a client guessing keys or sending
// garbage gets cheap refusals instead of key lookups. Only failures cost:
// after a call ends with codes.Unauthenticated, one unit is taken from the
// address's bucket (shared by all nodes through the Limiter's Redis). An
// address whose bucket is empty is refused with codes.ResourceExhausted,
// RetryInfo and ErrorInfo (reason [ReasonAuthRateLimited]) until one unit
// has refilled, without its credentials being looked at. Successful calls
// cost nothing and are never slowed by Redis.
//
// Each node remembers when the addresses it saw run out are free again, and
// checks only that before a call; a node that has not yet seen an address
// run out lets one more failure through, which is then refused by the shared
// bucket and remembered. Health checks are never refused: they need no
// credentials, and refusing them would let a client make a node look dead.
//
// Behind a proxy other than our gateway, every client has the proxy's
// address; key by client only where the gRPC port faces clients directly
// or through our gateway.
type AuthFailureGuard struct {
	l       *Limiter
	cfg     AuthFailureConfig
	local   *localBuckets
	blocked *lru.Cache[string, time.Time] // address key → refused until
}

// NewAuthFailureGuard returns a guard whose buckets live in l's Redis, with
// l's fallback while Redis is unreachable (its own local buckets, so that
// addresses cannot evict tenants').
func NewAuthFailureGuard(l *Limiter, cfg AuthFailureConfig) (*AuthFailureGuard, error) {
	if l == nil {
		return nil, errors.New("ratelimit: nil limiter")
	}
	if cfg.Limit == (Limit{}) {
		cfg.Limit = DefaultAuthFailureConfig().Limit
	}
	if err := cfg.Limit.validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: auth failure limit: %w", err)
	}
	local, err := newLocalBuckets(authLocalBuckets, l.cfg.LocalShare)
	if err != nil {
		return nil, err
	}
	blocked, err := lru.New[string, time.Time](blockedAddrs)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: blocked addresses: %w", err)
	}
	return &AuthFailureGuard{l: l, cfg: cfg, local: local, blocked: blocked}, nil
}

// UnaryServerInterceptor returns the guard for unary calls; it belongs just
// before the auth interceptor in the chain.
func (g *AuthFailureGuard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, healthServicePrefix) {
			return handler(ctx, req)
		}
		addr := clientKey(ctx, g.cfg.TrustForwardedFromLoopback)
		if err := g.check(addr); err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		g.observe(ctx, addr, err)
		return resp, err
	}
}

// StreamServerInterceptor returns the guard for streaming calls; it belongs
// just before the auth interceptor in the chain.
func (g *AuthFailureGuard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, healthServicePrefix) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		addr := clientKey(ctx, g.cfg.TrustForwardedFromLoopback)
		if err := g.check(addr); err != nil {
			return err
		}
		err := handler(srv, ss)
		g.observe(ctx, addr, err)
		return err
	}
}

// check refuses a call from an address that has no failures left.
func (g *AuthFailureGuard) check(addr string) error {
	until, ok := g.blocked.Peek(addr)
	if !ok {
		return nil
	}
	wait := until.Sub(g.l.cfg.Now())
	if wait <= 0 {
		g.blocked.Remove(addr)
		return nil
	}
	g.l.metrics.authRefused.Inc()
	return authRateLimited(wait)
}

// observe takes one unit for a failed authentication and remembers the
// address as blocked when its bucket is empty.
func (g *AuthFailureGuard) observe(ctx context.Context, addr string, err error) {
	if status.Code(err) != codes.Unauthenticated {
		return
	}
	// The failure happened whatever the client does next; count it even if
	// the client has gone.
	ctx = context.WithoutCancel(ctx)
	res, err := g.l.allowKey(ctx, g.l.cfg.KeyPrefix+":"+authFailureKind+":"+addr, authFailureKind, g.cfg.Limit, 1, g.local)
	if err != nil {
		g.l.logger.ErrorContext(ctx, "counting a failed authentication failed", slog.Any("error", err))
		return
	}
	wait := res.next
	if res.Allowed == 0 {
		wait = res.RetryAfter
	}
	if wait > 0 {
		g.blocked.Add(addr, g.l.cfg.Now().Add(wait))
		g.l.logger.DebugContext(ctx, "client address blocked after failed authentications",
			slog.String("client_addr", addr), slog.Duration("retry_after", wait))
	}
}

// authRateLimited is the status of a refused call.
func authRateLimited(wait time.Duration) error {
	wait = (wait + time.Millisecond - 1).Truncate(time.Millisecond)
	st := status.New(codes.ResourceExhausted,
		fmt.Sprintf("too many failed authentications from this address; retry after %s", wait))
	ds, err := st.WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)},
		&errdetails.ErrorInfo{Reason: ReasonAuthRateLimited, Domain: ErrorDomain, Metadata: map[string]string{
			"retry_after": wait.String(),
		}},
	)
	if err != nil {
		return st.Err()
	}
	return ds.Err()
}
