package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleDialTimeout bounds the dial that tells a live socket from a stale one.
const staleDialTimeout = time.Second

// Listen listens on a CSI endpoint (see ParseEndpoint).
//
// For a unix socket it creates the parent directory when missing. A socket
// file left behind by a process that is gone (the dial is refused) is removed
// and replaced; a socket that a live process answers on is an error, and so
// is a path that exists and is not a socket, which is left alone. Closing the
// returned listener removes the socket file.
func Listen(ep string) (net.Listener, error) {
	network, addr, err := ParseEndpoint(ep)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := prepareSocketPath(ep, addr); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listening on endpoint %s: %w", ep, err)
	}
	return lis, nil
}

// prepareSocketPath makes path ready for a unix listener: its directory
// exists and no stale socket sits on it.
func prepareSocketPath(ep, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("creating the directory of endpoint %s: %w", ep, err)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking endpoint %s: %w", ep, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("endpoint %s: %s exists and is not a socket; refusing to remove it, move it away or choose another endpoint", ep, path)
	}
	conn, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("endpoint %s is in use by another process; stop it or choose another endpoint", ep)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("endpoint %s: cannot tell whether the existing socket is in use: %w", ep, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket of endpoint %s: %w", ep, err)
	}
	return nil
}
