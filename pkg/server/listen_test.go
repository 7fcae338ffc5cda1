package server

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

func TestListenCreatesDirAndRemovesSocketOnClose(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a", "b", "csi.sock")
	lis, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("socket not created: %v", err)
	}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	staleSocket(t, sock)
	lis, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer lis.Close()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dialing the new socket: %v", err)
	}
	_ = conn.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	lis, err := Listen("unix://" + sock)
	if err == nil {
		_ = lis.Close()
		t.Fatal("Listen on a socket in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("Listen: %v; want it to say the endpoint is in use", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the other listener's socket is gone: %v", err)
	}
	_ = conn.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	tests := []struct {
		name string
		make func(path string) error
	}{
		{name: "regular file", make: func(p string) error { return os.WriteFile(p, []byte("keep me"), 0o600) }},
		{name: "directory", make: func(p string) error { return os.Mkdir(p, 0o700) }},
		{name: "symlink", make: func(p string) error { return os.Symlink("/nonexistent", p) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "csi.sock")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			lis, err := Listen("unix://" + path)
			if err == nil {
				_ = lis.Close()
				t.Fatal("Listen over a non-socket succeeded")
			}
			if !strings.Contains(err.Error(), "not a socket") {
				t.Errorf("Listen: %v; want it to say the path is not a socket", err)
			}
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("path removed: %v", err)
			}
			if !os.SameFile(before, after) {
				t.Error("path replaced")
			}
		})
	}
}

func TestListenTCP(t *testing.T) {
	lis, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer lis.Close()
	if lis.Addr().Network() != "tcp" {
		t.Errorf("network %s, want tcp", lis.Addr().Network())
	}
}

func TestListenBadEndpoint(t *testing.T) {
	if lis, err := Listen("unix://relative.sock"); err == nil {
		_ = lis.Close()
		t.Fatal("Listen on a relative unix path succeeded")
	}
}
