package registration

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	regv1 "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const testDriver = "test.dirvol.io"

// closed is a CSI endpoint that already listens.
func closed() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// newServer returns a Server registering testDriver in dir.
func newServer(t *testing.T, dir string, listening <-chan struct{}) *Server {
	t.Helper()
	s, err := New(Config{Dir: dir, CheckInterval: 20 * time.Millisecond}, testDriver, listening)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run runs s in the background; stop cancels it and returns Run's error.
// stop also runs at cleanup.
func run(t *testing.T, s *Server) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

// kubelet dials the registration socket as the kubelet's plugin watcher
// does.
func kubelet(t *testing.T, sock string) regv1.RegistrationClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return regv1.NewRegistrationClient(conn)
}

// callCtx bounds a call as the kubelet does (one second for GetInfo), with
// room for a loaded test machine.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// staleSocket leaves a socket file at path that nothing listens on, as a
// killed driver does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGetInfoAndVerdicts(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir, closed())
	stop := run(t, s)
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	waitFor(t, "the registration socket", func() bool { return isSocket(sock) })
	k := kubelet(t, sock)

	info, err := k.GetInfo(callCtx(t), &regv1.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	want := []string{regv1.CSIPlugin, testDriver, "/var/lib/kubelet/plugins/" + testDriver + "/csi.sock", "1.0.0"}
	got := []string{info.GetType(), info.GetName(), info.GetEndpoint(), strings.Join(info.GetSupportedVersions(), ",")}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("GetInfo: type, name, endpoint, versions = %q, want %q", got, want)
			break
		}
	}
	if v := testutil.ToFloat64(s.registered); v != 0 {
		t.Errorf("dirvol_kubelet_registered %v before any verdict, want 0", v)
	}
	if c := s.Collectors(); len(c) != 2 {
		t.Errorf("Collectors: %d metrics, want 2", len(c))
	}

	if _, err := k.NotifyRegistrationStatus(callCtx(t), &regv1.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(registered): %v", err)
	}
	if v := testutil.ToFloat64(s.registered); v != 1 {
		t.Errorf("dirvol_kubelet_registered %v after success, want 1", v)
	}

	refusal := &regv1.RegistrationStatus{PluginRegistered: false, Error: "RegisterPlugin error -- plugin registration failed with err: NodeGetInfo failed"}
	if _, err := k.NotifyRegistrationStatus(callCtx(t), refusal); err != nil {
		t.Fatalf("NotifyRegistrationStatus(refused): %v", err)
	}
	if v := testutil.ToFloat64(s.registered); v != 0 {
		t.Errorf("dirvol_kubelet_registered %v after a refusal, want 0", v)
	}
	if v := testutil.ToFloat64(s.refusals); v != 1 {
		t.Errorf("dirvol_kubelet_registration_refusals_total %v, want 1", v)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("registration socket left after shutdown: %v", err)
	}
}

func TestKubeletEndpointFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, KubeletEndpoint: "/var/lib/k0s/kubelet/plugins/x/csi.sock", CheckInterval: time.Second}
	s, err := New(cfg, testDriver, closed())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run(t, s)
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	waitFor(t, "the registration socket", func() bool { return isSocket(sock) })
	info, err := kubelet(t, sock).GetInfo(callCtx(t), &regv1.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetEndpoint() != cfg.KubeletEndpoint {
		t.Errorf("endpoint %q, want %q", info.GetEndpoint(), cfg.KubeletEndpoint)
	}
}

// The kubelet calls NodeGetInfo right after GetInfo: no socket may exist
// before the CSI endpoint listens.
func TestNoSocketBeforeCSIEndpointListens(t *testing.T) {
	dir := t.TempDir()
	listening := make(chan struct{})
	run(t, newServer(t, dir, listening))
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	// Ten check intervals: a server that ignored listening would have made
	// the socket at once.
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("registration socket made before the CSI endpoint listens: %v", err)
	}
	close(listening)
	waitFor(t, "the registration socket once the CSI endpoint listens", func() bool { return isSocket(sock) })
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	staleSocket(t, sock)
	run(t, newServer(t, dir, closed()))
	// The stale socket refuses connections (and the new one may get its
	// inode number): an answer shows it was replaced.
	if _, err := kubelet(t, sock).GetInfo(callCtx(t), &regv1.InfoRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("GetInfo on the new socket: %v", err)
	}
}

func TestLiveSocketRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	err = newServer(t, dir, closed()).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("Run over a live socket: %v; want an error saying it is in use", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the other process's socket is gone: %v", err)
	}
	_ = conn.Close()
}

func TestNonSocketRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, testDriver+"-reg.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := newServer(t, dir, closed()).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run over a regular file: %v; want an error saying it is not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the file was changed: %q, %v", b, err)
	}
}

func TestDisabledWhenDirEmpty(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{CheckInterval: time.Second}, testDriver, make(chan struct{}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	// The CSI endpoint never listens here: a disabled server must not wait
	// for it.
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run of a disabled server did not return")
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("files made: %v, %v", entries, err)
	}
	if c := s.Collectors(); len(c) != 0 {
		t.Errorf("a disabled server exports %d metrics, want none", len(c))
	}
}

// A socket removed while the driver runs (the kubelet's directory cleaned)
// is made again, and the kubelet can register the driver through it.
func TestRemovedSocketRecreated(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir, closed())
	run(t, s)
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	waitFor(t, "the registration socket", func() bool { return isSocket(sock) })
	k := kubelet(t, sock)
	if _, err := k.NotifyRegistrationStatus(callCtx(t), &regv1.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus: %v", err)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registration socket made again", func() bool { return isSocket(sock) })
	if v := testutil.ToFloat64(s.registered); v != 0 {
		t.Errorf("dirvol_kubelet_registered %v after the socket was made again, want 0 until the kubelet's next verdict", v)
	}
	if _, err := kubelet(t, sock).GetInfo(callCtx(t), &regv1.InfoRequest{}); err != nil {
		t.Fatalf("GetInfo on the socket made again: %v", err)
	}
}

// A registration directory that does not exist yet (the kubelet starts
// after the driver) is waited for, not created.
func TestMissingDirWaitedFor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins_registry")
	stop := run(t, newServer(t, dir, closed()))
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the registration directory was made by the driver: %v", err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, testDriver+"-reg.sock")
	waitFor(t, "the registration socket once the directory exists", func() bool { return isSocket(sock) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config { return Config{Dir: DefaultDir, CheckInterval: time.Second} }
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "disabled", edit: func(c *Config) { c.Dir = "" }},
		{name: "disabled, other settings unused", edit: func(c *Config) { *c = Config{} }},
		{name: "kubelet endpoint", edit: func(c *Config) { c.KubeletEndpoint = "/var/lib/k0s/kubelet/plugins/d/csi.sock" }},
		{name: "relative dir", edit: func(c *Config) { c.Dir = "plugins_registry" }, wantErr: "--kubelet-registration-dir"},
		{name: "endpoint with scheme", edit: func(c *Config) { c.KubeletEndpoint = "unix:///csi/csi.sock" }, wantErr: "--kubelet-registration-path"},
		{name: "zero interval", edit: func(c *Config) { c.CheckInterval = 0 }, wantErr: "--kubelet-registration-check-interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v; want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestNewRefusesUnusableSocketPath(t *testing.T) {
	tests := []struct {
		name, dir, driver, wantErr string
	}{
		{name: "driver name with a slash", dir: "/reg", driver: "a/b", wantErr: "single path element"},
		{name: "driver name ..", dir: "/reg", driver: "..", wantErr: "single path element"},
		{name: "path too long", dir: "/" + strings.Repeat("d", 100), driver: testDriver, wantErr: "shorter --kubelet-registration-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Dir: tc.dir, CheckInterval: time.Second}, tc.driver, closed())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
