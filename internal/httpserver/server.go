// Package httpserver builds abacusd's HTTP handler: the REST gateway (which calls the gRPC
// server through a client connection, so every REST request passes the same interceptor chain
// as a gRPC call), /healthz, /readyz, /metrics and the OpenAPI document.
package httpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/gen/openapiv2"
)

// Check is one dependency /readyz asks about.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Registrar registers one service's REST routes on the gateway mux, for example
// ingestv1.RegisterIngestServiceHandler.
type Registrar func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error

// Config configures the HTTP handler.
type Config struct {
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes int64
	// ReadyTimeout bounds each readiness check.
	ReadyTimeout time.Duration
}

// NewHandler returns the HTTP handler. conn is a client connection to this process's gRPC
// server; services lists the REST routes to expose (only those of the roles this process runs).
func NewHandler(ctx context.Context, cfg Config, conn *grpc.ClientConn, services []Registrar, checks []Check, gatherer prometheus.Gatherer, logger *slog.Logger) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newJSONMarshaler()),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
	)
	for _, register := range services {
		if err := register(ctx, gw, conn); err != nil {
			return nil, err
		}
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", http.MaxBytesHandler(gw, cfg.MaxBodyBytes))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", readyHandler(cfg.ReadyTimeout, checks, logger))
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiv2.Document)
	})
	return mux, nil
}

// plainHeaders are the response metadata keys forwarded as plain HTTP headers
// rather than as Grpc-Metadata-*: the rate-limit state of ingest calls
// (draft-ietf-httpapi-ratelimit-headers).
var plainHeaders = map[string]string{
	"ratelimit-limit":     "RateLimit-Limit",
	"ratelimit-remaining": "RateLimit-Remaining",
	"ratelimit-reset":     "RateLimit-Reset",
}

// outgoingHeader maps response metadata to HTTP headers: plainHeaders by
// name, the rest as the gateway does by default, except the gRPC content
// type.
func outgoingHeader(key string) (string, bool) {
	if h, ok := plainHeaders[key]; ok {
		return h, true
	}
	if key == "content-type" {
		return "", false // the gRPC content type says nothing to an HTTP client
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// errorHandler is the gateway's default error rendering (gRPC status → HTTP status and a JSON
// body with the code, message and details) plus the headers clients act on.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		// The gateway's default puts the status message in WWW-Authenticate; RFC 6750 wants the
		// scheme there, so this header is set when the default handler writes the status.
		w = &headerOverride{ResponseWriter: w, key: "WWW-Authenticate", value: `Bearer realm="abacus"`}
	case codes.Unavailable, codes.ResourceExhausted:
		// A failed call's metadata may arrive as trailers only, which the
		// default handler forwards only to clients that accept trailers.
		if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
			for key, h := range plainHeaders {
				if vs := md.TrailerMD.Get(key); len(vs) > 0 && len(md.HeaderMD.Get(key)) == 0 {
					w.Header().Set(h, vs[0])
				}
			}
		}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				secs := int(ri.GetRetryDelay().AsDuration().Round(time.Second) / time.Second)
				w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

func readyHandler(timeout time.Duration, checks []Check, logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		results := make(map[string]string, len(checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		ready := true
		for _, c := range checks {
			wg.Go(func() {
				err := c.Check(ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ready = false
					results[c.Name] = "unavailable"
					logger.WarnContext(ctx, "readiness check failed", "check", c.Name, "error", err)
					return
				}
				results[c.Name] = "ok"
			})
		}
		wg.Wait()
		code, state := http.StatusOK, "ready"
		if !ready {
			code, state = http.StatusServiceUnavailable, "not ready"
		}
		writeJSON(w, code, map[string]any{"status": state, "checks": results})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// headerOverride sets one header just before the status line is written.
type headerOverride struct {
	http.ResponseWriter
	key, value string
}

func (h *headerOverride) WriteHeader(code int) {
	h.Header().Set(h.key, h.value)
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerOverride) Write(b []byte) (int, error) {
	if h.Header().Get(h.key) != h.value {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}
