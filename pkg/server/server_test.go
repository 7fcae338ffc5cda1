package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const testDriver = "test.dirvol.io"

// fakeIdentity answers GetPluginInfo and runs probe, when set, for Probe.
type fakeIdentity struct {
	csi.UnimplementedIdentityServer
	probe func(context.Context) (*csi.ProbeResponse, error)
}

func (f *fakeIdentity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: testDriver, VendorVersion: "v0"}, nil
}

func (f *fakeIdentity) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if f.probe != nil {
		return f.probe(ctx)
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// newTestServer returns a Server with id registered, for a unix socket under
// t.TempDir(), and the socket's path.
func newTestServer(t *testing.T, id csi.IdentityServer, health func() error, onStop func(), timeout time.Duration) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	cfg := Config{Endpoint: "unix://" + sock, GracefulStopTimeout: timeout}
	s, err := New(cfg, metrics.NewCSIMetricsManagerForPlugin(testDriver), health, onStop)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	csi.RegisterIdentityServer(s, id)
	return s, sock
}

// start runs serve in the background; the returned stop cancels its context
// and returns its error. stop also runs at cleanup.
func start(t *testing.T, serve func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

// dial returns an Identity client for the unix socket at sock.
func dial(t *testing.T, sock string) csi.IdentityClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return csi.NewIdentityClient(conn)
}

// callCtx bounds a test call; calls wait for the server to come up.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRunServesAndRemovesSocket(t *testing.T) {
	var stopped atomic.Bool
	s, sock := newTestServer(t, &fakeIdentity{}, nil, func() { stopped.Store(true) }, time.Minute)
	stop := start(t, s.Run)

	resp, err := dial(t, sock).GetPluginInfo(callCtx(t), &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("GetPluginInfo: %v", err)
	}
	if resp.GetName() != testDriver {
		t.Errorf("name %q, want %q", resp.GetName(), testDriver)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !stopped.Load() {
		t.Error("onStop was not called")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after stop: %v", err)
	}
}

func TestRunFailsOnEndpointInUse(t *testing.T) {
	s, sock := newTestServer(t, &fakeIdentity{}, nil, nil, time.Minute)
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run on an endpoint in use succeeded")
	}
	select {
	case <-s.Listening():
		t.Error("Listening closed although Run could not listen")
	default:
	}
}

// Listening is closed only once the socket accepts a dial, so that the
// kubelet, told about the driver then, finds it.
func TestListeningClosedOnceSocketAccepts(t *testing.T) {
	s, sock := newTestServer(t, &fakeIdentity{}, nil, nil, time.Minute)
	select {
	case <-s.Listening():
		t.Fatal("Listening closed before Run")
	default:
	}
	start(t, s.Run)
	select {
	case <-s.Listening():
	case <-time.After(30 * time.Second):
		t.Fatal("Listening not closed 30s after Run started")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial once Listening is closed: %v", err)
	}
	_ = conn.Close()
}

func TestGracefulStopFinishesInFlightCall(t *testing.T) {
	entered, release, stopping := make(chan struct{}), make(chan struct{}), make(chan struct{})
	id := &fakeIdentity{probe: func(context.Context) (*csi.ProbeResponse, error) {
		close(entered)
		<-release
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
	}}
	s, sock := newTestServer(t, id, nil, func() { close(stopping) }, time.Minute)
	stop := start(t, s.Run)
	client, ctx := dial(t, sock), callCtx(t)

	callErr := make(chan error, 1)
	go func() {
		_, err := client.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
		callErr <- err
	}()
	<-entered
	stopErr := make(chan error, 1)
	go func() { stopErr <- stop() }()
	<-stopping
	// The graceful stop closes the listener, which removes the socket, and
	// then waits for the call.
	for _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist); _, err = os.Lstat(sock) {
		time.Sleep(time.Millisecond)
	}

	select {
	case err := <-stopErr:
		t.Fatalf("Run returned while a call was in flight: %v", err)
	default:
	}
	close(release)
	if err := <-callErr; err != nil {
		t.Errorf("in-flight Probe: %v", err)
	}
	if err := <-stopErr; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestGracefulStopTimeoutCancelsCall(t *testing.T) {
	entered := make(chan struct{})
	id := &fakeIdentity{probe: func(ctx context.Context) (*csi.ProbeResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	s, sock := newTestServer(t, id, nil, nil, 50*time.Millisecond)
	stop := start(t, s.Run)

	client, ctx := dial(t, sock), callCtx(t)
	callErr := make(chan error, 1)
	go func() {
		_, err := client.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
		callErr <- err
	}()
	<-entered
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := <-callErr; err == nil {
		t.Error("a call that outlived the graceful stop timeout succeeded")
	}
}

func TestPanicReturnsInternal(t *testing.T) {
	id := &fakeIdentity{probe: func(context.Context) (*csi.ProbeResponse, error) {
		panic("boom")
	}}
	s, sock := newTestServer(t, id, nil, nil, time.Minute)
	start(t, s.Run)
	client := dial(t, sock)

	_, err := client.Probe(callCtx(t), &csi.ProbeRequest{}, grpc.WaitForReady(true))
	if code := status.Code(err); code != codes.Internal {
		t.Fatalf("Probe: code %s, want Internal (err %v)", code, err)
	}
	if msg := status.Convert(err).Message(); msg != "internal error: boom" {
		t.Errorf("Probe: message %q, want %q", msg, "internal error: boom")
	}
	if _, err := client.GetPluginInfo(callCtx(t), &csi.GetPluginInfoRequest{}); err != nil {
		t.Errorf("GetPluginInfo after a panic: %v", err)
	}
}

func TestHTTPMetricsAndHealth(t *testing.T) {
	var unready atomic.Bool
	ready := func() error {
		if unready.Load() {
			return errors.New("pool \"default\" is read-only")
		}
		return nil
	}
	s, sock := newTestServer(t, &fakeIdentity{}, ready, nil, time.Minute)
	csiLis, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpLis.Addr().String()
	stop := start(t, func(ctx context.Context) error { return s.Serve(ctx, csiLis, httpLis) })

	if _, err := dial(t, sock).GetPluginInfo(callCtx(t), &csi.GetPluginInfoRequest{}); err != nil {
		t.Fatalf("GetPluginInfo: %v", err)
	}
	code, body := get(t, base+"/metrics")
	want := fmt.Sprintf(`csi_plugin_operations_seconds_count{driver_name=%q,grpc_status_code="OK",method_name=%q} 1`,
		testDriver, csi.Identity_GetPluginInfo_FullMethodName)
	if code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("/metrics: %d, body lacks %s:\n%s", code, want, body)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, base+path); code != http.StatusOK {
			t.Errorf("%s when ready: %d %s", path, code, body)
		}
	}
	// A read-only pool makes the driver not ready, but the process is
	// alive: a liveness probe on /healthz must not get it restarted.
	unready.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "read-only") {
		t.Errorf("/readyz when not ready: %d %s; want 503 with the reason", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz when not ready: %d %s; want 200: liveness is the process, not the pools", code, body)
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("HTTP still served after stop")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestConfigValidate(t *testing.T) {
	valid := Config{Endpoint: "unix:///csi/csi.sock", HTTPEndpoint: ":8080", GracefulStopTimeout: time.Second}
	tests := []struct {
		name    string
		modify  func(*Config)
		wantErr bool
	}{
		{name: "valid", modify: func(*Config) {}},
		{name: "no HTTP", modify: func(c *Config) { c.HTTPEndpoint = "" }},
		{name: "tcp endpoint", modify: func(c *Config) { c.Endpoint = "tcp://127.0.0.1:10000" }},
		{name: "bad endpoint", modify: func(c *Config) { c.Endpoint = "csi.sock" }, wantErr: true},
		{name: "bad HTTP endpoint", modify: func(c *Config) { c.HTTPEndpoint = "8080" }, wantErr: true},
		{name: "zero timeout", modify: func(c *Config) { c.GracefulStopTimeout = 0 }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.modify(&cfg)
			if err := cfg.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
