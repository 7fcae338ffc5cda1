// Package server is the gRPC plumbing of the driver: it listens on the CSI
// endpoint, wraps every call in logging, metrics and panic recovery, serves
// /metrics, /healthz and /readyz over HTTP, and stops gracefully.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// Config holds the settings of the gRPC and HTTP servers.
type Config struct {
	// Endpoint is where the CSI services listen:
	// unix:///absolute/path/csi.sock or tcp://host:port.
	Endpoint string
	// HTTPEndpoint is the host:port that /metrics, /healthz and /readyz are
	// served on, as in :8080. Empty serves no HTTP.
	HTTPEndpoint string
	// GracefulStopTimeout bounds how long shutdown waits for in-flight calls
	// to finish before cancelling them. Keep it below the pod's
	// terminationGracePeriodSeconds.
	GracefulStopTimeout time.Duration
}

// AddFlags registers the Config fields as flags on fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "endpoint", "unix:///csi/csi.sock",
		"CSI endpoint: unix:///absolute/path/csi.sock or tcp://host:port.")
	fs.StringVar(&c.HTTPEndpoint, "http-endpoint", "",
		"host:port to serve /metrics, /healthz (liveness) and /readyz (readiness) on, as in :8080. Empty disables HTTP.")
	fs.DurationVar(&c.GracefulStopTimeout, "graceful-stop-timeout", 20*time.Second,
		"How long shutdown waits for in-flight CSI calls before cancelling them.")
}

// Validate reports the first setting that is not usable.
func (c *Config) Validate() error {
	if _, _, err := ParseEndpoint(c.Endpoint); err != nil {
		return err
	}
	if c.HTTPEndpoint != "" {
		if _, _, err := net.SplitHostPort(c.HTTPEndpoint); err != nil {
			return fmt.Errorf("http endpoint %q: want host:port, as in :8080", c.HTTPEndpoint)
		}
	}
	if c.GracefulStopTimeout <= 0 {
		return fmt.Errorf("graceful stop timeout %s: must be positive, as in 20s", c.GracefulStopTimeout)
	}
	return nil
}

// Server serves the CSI services registered on it. It is a
// grpc.ServiceRegistrar: register the services with csi.Register*Server
// before calling Run. Run, or Serve, may be called once.
type Server struct {
	cfg    Config
	grpc   *grpc.Server
	mm     metrics.CSIMetricsManager
	ready  func() error
	onStop func()
	// listening is closed once the CSI listener exists, so that work that
	// must not start before the endpoint answers (kubelet registration)
	// can wait for it.
	listening chan struct{}
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// New returns a Server for cfg. mm records csi_plugin_operations_seconds for
// every call and is served at /metrics. ready answers /readyz: 200 when it
// returns nil, 503 with its error otherwise; nil means always ready. /healthz
// answers 200 while the process serves HTTP and consults nothing else: it is
// for liveness probes, and a restart cures no read-only pool and interrupts
// the unpublish calls the kubelet is making.
// onStop, when not nil, is called once as shutdown begins, before the
// server stops taking calls, so that Probe can report not ready.
func New(cfg Config, mm metrics.CSIMetricsManager, ready func() error, onStop func()) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mm == nil {
		return nil, errors.New("server: no metrics manager")
	}
	return &Server{
		cfg:       cfg,
		grpc:      grpc.NewServer(grpc.ChainUnaryInterceptor(observe(mm), recoverPanic)),
		mm:        mm,
		ready:     ready,
		onStop:    onStop,
		listening: make(chan struct{}),
	}, nil
}

// Listening returns a channel that is closed once the CSI endpoint listens:
// from then on a client's dial is accepted (the kernel queues connections
// until Serve accepts them). It stays open when Run fails to listen.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// RegisterService registers a gRPC service; it implements
// grpc.ServiceRegistrar. Call it before Run.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// Run listens on cfg.Endpoint (see Listen) and cfg.HTTPEndpoint, then serves
// as Serve does until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	csiLis, err := Listen(s.cfg.Endpoint)
	if err != nil {
		return err
	}
	var httpLis net.Listener
	if s.cfg.HTTPEndpoint != "" {
		httpLis, err = net.Listen("tcp", s.cfg.HTTPEndpoint)
		if err != nil {
			_ = csiLis.Close()
			return fmt.Errorf("listening on http endpoint %s: %w", s.cfg.HTTPEndpoint, err)
		}
	}
	return s.Serve(ctx, csiLis, httpLis)
}

// Serve serves the CSI services on csiLis and, when httpLis is not nil,
// /metrics, /healthz and /readyz on httpLis, until ctx is cancelled or a server fails.
// It closes Listening first: csiLis already queues connections.
// Then it calls onStop, stops gRPC gracefully (cancelling calls still in
// flight after cfg.GracefulStopTimeout) and shuts HTTP down. It closes both
// listeners, which removes a unix socket file. It returns nil after a
// cancelled ctx, or the error that made a server fail.
func (s *Server) Serve(ctx context.Context, csiLis, httpLis net.Listener) error {
	logger := klog.FromContext(ctx)
	close(s.listening)
	g, gctx := errgroup.WithContext(ctx)

	g.Go(func() error {
		logger.Info("Serving CSI", "endpoint", csiLis.Addr().String())
		if err := s.grpc.Serve(csiLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving CSI on %s: %w", csiLis.Addr(), err)
		}
		return nil
	})

	var hs *http.Server
	if httpLis != nil {
		hs = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			logger.Info("Serving HTTP", "address", httpLis.Addr().String())
			if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving HTTP on %s: %w", httpLis.Addr(), err)
			}
			return nil
		})
	}

	g.Go(func() error {
		<-gctx.Done()
		return s.stop(logger, hs)
	})
	return g.Wait()
}

// stop shuts the servers down; hs may be nil.
func (s *Server) stop(logger klog.Logger, hs *http.Server) error {
	logger.Info("Shutting down", "gracefulStopTimeout", s.cfg.GracefulStopTimeout)
	if s.onStop != nil {
		s.onStop()
	}

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.cfg.GracefulStopTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		logger.Info("In-flight calls did not finish in time; cancelling them", "timeout", s.cfg.GracefulStopTimeout)
		s.grpc.Stop()
		<-stopped
	}

	if hs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.GracefulStopTimeout)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("shutting down HTTP: %w", err)
	}
	return nil
}

// httpHandler serves /metrics from the metrics manager, /healthz (the
// process answers) and /readyz from the ready function.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	s.mm.RegisterToServer(mux, "/metrics")
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.ready != nil {
			if err := s.ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}
