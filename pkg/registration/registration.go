// Package registration registers the driver with the kubelet's plugin
// watcher, as node-driver-registrar does: it serves the kubelet's
// pluginregistration.v1 Registration service on a socket in the kubelet's
// plugin registration directory. The kubelet finds the socket, calls GetInfo
// to learn the driver's name and CSI endpoint, calls NodeGetInfo on that
// endpoint, writes the node's CSINode entry and reports its verdict with
// NotifyRegistrationStatus.
//
// The socket is made only once the CSI endpoint listens: the kubelet calls
// NodeGetInfo right after GetInfo and gives GetInfo one second. It stays while
// the driver runs, so that a restarted kubelet finds it again when it scans
// the directory. If it disappears (someone cleaned the directory), the next
// check, every Config.CheckInterval, makes it again and the kubelet registers
// the driver anew; a periodic stat was chosen over inotify because it also
// covers a directory that is itself removed and made again, and costs one
// stat per interval. The socket is removed at shutdown, which tells the
// kubelet to forget the driver until it comes back.
package registration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/dirvol/dirvol/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	regv1 "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// supportedVersions are the CSI versions the kubelet may speak to the driver.
var supportedVersions = []string{"1.0.0"}

// Server serves the kubelet's Registration service for one driver.
type Server struct {
	regv1.UnimplementedRegistrationServer

	dir        string
	socket     string // empty when registration is disabled
	endpoint   string
	driverName string
	interval   time.Duration
	listening  <-chan struct{}

	registered prometheus.Gauge
	refusals   prometheus.Counter
}

var _ regv1.RegistrationServer = (*Server)(nil)

// New returns a Server that registers driverName with the kubelet once
// csiListening is closed (see server.Server.Listening). With cfg.Dir empty
// it is disabled: Run returns at once.
func New(cfg Config, driverName string, csiListening <-chan struct{}) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		endpoint:   cfg.kubeletEndpoint(driverName),
		driverName: driverName,
		interval:   cfg.CheckInterval,
		listening:  csiListening,
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dirvol_kubelet_registered",
			Help: "1 when the kubelet's last verdict on the driver's plugin registration was success; 0 before its first verdict, after a refusal and while the registration socket is being made again.",
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dirvol_kubelet_registration_refusals_total",
			Help: "Times the kubelet reported that it could not register the driver (NotifyRegistrationStatus with plugin_registered false); its reason is in the driver's log.",
		}),
	}
	if cfg.Dir == "" {
		return s, nil
	}
	sock, err := cfg.socketPath(driverName)
	if err != nil {
		return nil, err
	}
	s.dir, s.socket = cfg.Dir, sock
	return s, nil
}

// Collectors returns the registration metrics, for the driver's registry;
// none when registration is disabled, so that no "not registered" figure
// stands for a driver that is not meant to register.
func (s *Server) Collectors() []prometheus.Collector {
	if s.socket == "" {
		return nil
	}
	return []prometheus.Collector{s.registered, s.refusals}
}

// GetInfo tells the kubelet what the driver is and where its CSI endpoint is.
func (s *Server) GetInfo(ctx context.Context, _ *regv1.InfoRequest) (*regv1.PluginInfo, error) {
	klog.FromContext(ctx).V(4).Info("Kubelet asked for the plugin info")
	return &regv1.PluginInfo{
		Type:              regv1.CSIPlugin,
		Name:              s.driverName,
		Endpoint:          s.endpoint,
		SupportedVersions: supportedVersions,
	}, nil
}

// NotifyRegistrationStatus records the kubelet's verdict. A refusal is
// logged with the kubelet's reason; the kubelet tries again by itself, so
// nothing else is done.
func (s *Server) NotifyRegistrationStatus(ctx context.Context, req *regv1.RegistrationStatus) (*regv1.RegistrationStatusResponse, error) {
	logger := klog.FromContext(ctx)
	if req.GetPluginRegistered() {
		s.registered.Set(1)
		logger.Info("Registered with the kubelet", "driverName", s.driverName, "kubeletEndpoint", s.endpoint)
		return &regv1.RegistrationStatusResponse{}, nil
	}
	s.registered.Set(0)
	s.refusals.Inc()
	logger.Error(nil, "The kubelet refused to register the driver; it will try again. Check that the kubelet reaches the CSI socket at kubeletEndpoint (--kubelet-registration-path) and read the kubelet's log",
		"kubeletError", req.GetError(), "driverName", s.driverName, "kubeletEndpoint", s.endpoint)
	return &regv1.RegistrationStatusResponse{}, nil
}

// Run waits for the CSI endpoint to listen, then serves the Registration
// service until ctx is cancelled, keeping the socket in place (see the
// package comment), and removes the socket. A socket another process
// answers on, or a path that is not a socket, is an error at start, as for
// the CSI endpoint; later they are logged and retried. A missing
// registration directory is waited for. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	if s.socket == "" {
		logger.Info("Kubelet plugin registration disabled (--kubelet-registration-dir is empty)")
		return nil
	}
	logger = logger.WithValues("registrationSocket", s.socket)
	select {
	case <-ctx.Done():
		return nil
	case <-s.listening:
	}

	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(klog.NewContext(ctx, logger.WithValues("method", info.FullMethod)), req)
	}))
	regv1.RegisterRegistrationServer(g, s)
	// Stop closes the current listener, which removes the socket file.
	defer g.Stop()

	serveErr := make(chan error, 1)
	var cur *listener
	waitingForDir := false
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for first := true; ; first = false {
		if cur != nil && !cur.inPlace(logger) {
			logger.Info("The registration socket was removed or replaced; making it again so that the kubelet registers the driver again")
			cur.retire()
			cur = nil
			s.registered.Set(0)
		}
		if cur == nil {
			next, err := s.listen()
			switch {
			case err == nil:
				cur, waitingForDir = next, false
				logger.Info("Serving kubelet plugin registration", "driverName", s.driverName, "kubeletEndpoint", s.endpoint)
				go serve(g, cur, serveErr)
			case errors.Is(err, errNoDir):
				if !waitingForDir {
					logger.Error(err, "The kubelet cannot find the driver until this directory exists; waiting for it. Mount the kubelet's plugins_registry there, or disable registration with --kubelet-registration-dir=")
					waitingForDir = true
				}
			case first:
				return err
			default:
				logger.Error(err, "Cannot make the registration socket again; trying again", "in", s.interval)
			}
		}
		select {
		case <-ctx.Done():
			g.GracefulStop()
			return nil
		case err := <-serveErr:
			return fmt.Errorf("serving kubelet registration on %s: %w", s.socket, err)
		case <-tick.C:
		}
	}
}

// listener is the registration socket as made by one listen.
type listener struct {
	lis     *net.UnixListener
	fi      fs.FileInfo // the socket file, to notice a replacement
	retired atomic.Bool
}

// listen makes the registration socket, replacing a stale one.
func (s *Server) listen() (*listener, error) {
	dir, err := os.Stat(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errNoDir, s.dir)
	}
	if err == nil && !dir.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", errNoDir, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("checking the kubelet registration directory: %w", err)
	}
	lis, err := server.Listen("unix://" + s.socket)
	if err != nil {
		return nil, fmt.Errorf("kubelet registration: %w", err)
	}
	ul, ok := lis.(*net.UnixListener)
	if !ok {
		_ = lis.Close()
		return nil, fmt.Errorf("kubelet registration: %s is not a unix socket listener", s.socket)
	}
	fi, err := os.Lstat(s.socket)
	if err != nil {
		_ = ul.Close()
		return nil, fmt.Errorf("kubelet registration: the socket just made is gone: %w", err)
	}
	return &listener{lis: ul, fi: fi}, nil
}

// serve serves g on l until l is closed; the error of a listener that was
// not retired on purpose, nor stopped with g, goes to errc.
func serve(g *grpc.Server, l *listener, errc chan<- error) {
	err := g.Serve(l.lis)
	if err == nil || l.retired.Load() || errors.Is(err, grpc.ErrServerStopped) {
		return
	}
	select {
	case errc <- err:
	default:
	}
}

// inPlace reports whether the socket file is still the one l made. When
// that cannot be told, it is assumed to be.
func (l *listener) inPlace(logger klog.Logger) bool {
	fi, err := os.Lstat(l.lis.Addr().String())
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		logger.V(2).Info("Cannot check the registration socket", "err", err)
		return true
	}
	return os.SameFile(fi, l.fi)
}

// retire closes l without removing the socket path, which no longer holds
// l's socket (it may already hold a new one).
func (l *listener) retire() {
	l.retired.Store(true)
	l.lis.SetUnlinkOnClose(false)
	_ = l.lis.Close()
}
