//go:build linux

// Package netns runs a test binary inside a network namespace of its own, so
// that everything a cluster with a real node serves (etcd, the control plane,
// containerd's streaming server, the kubelet, the pods' bridge) listens only
// on addresses of a namespace the test made, and the tests' clients reach it
// there. Only the network namespace is new: the mount namespace stays the
// host's, so the kubelet, containerd and the driver see the same mounts.
//
// TestMain calls Enter first. The first call re-executes the test binary in a
// new network namespace and returns the child's exit code; inside the child,
// Enter configures the namespace and returns so the tests run.
package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses inside the namespace. The node's address sits on one end of a
// veth pair whose other end is in the namespace too (this kernel has no
// dummy link type); nothing links the namespace to the host's.
const (
	// NodeIP is the real node's InternalIP: the kubelet serves on it and
	// the API server advertises it.
	NodeIP = "10.99.0.2"
	// peerIP is the veth's other end.
	peerIP = "10.99.0.1"
	prefix = "/24"
	// ServiceIP is the first address of the cluster's service range, the
	// `kubernetes` Service's ClusterIP, which pods are told to reach the
	// API server at (KUBERNETES_SERVICE_HOST). There is no kube-proxy: the
	// address is put on the namespace's loopback and the API server listens
	// on the Service's port, so pods reach it directly.
	ServiceIP = "10.0.0.1"

	nodeLink = "dv-node"
	peerLink = "dv-peer"
)

// envInside marks the re-executed child.
const envInside = "DIRVOL_E2E_NETNS"

// Inside reports whether this process is the re-executed child.
func Inside() bool { return os.Getenv(envInside) != "" }

// Enter runs the rest of this test binary in a new network namespace. In the
// parent it starts the child, forwards signals to it, waits, checks that no
// process of the child's namespace outlived it, and returns done=true with
// the exit code to use. In the child it brings up the namespace's links and
// returns done=false.
func Enter() (done bool, code int, err error) {
	if Inside() {
		return false, 0, configure()
	}
	return true, reexec(), nil
}

func reexec() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns: find the test binary:", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInside+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		// go test kills the parent on timeout; the child must not run on
		// without anyone reading its output.
		Pdeathsig: syscall.SIGKILL,
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "netns: start the test binary in a new network namespace:", err)
		return 1
	}
	ns, nsErr := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	for wait := true; wait; {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case werr = <-waited:
			wait = false
		}
	}
	code := 0
	if werr != nil {
		var exit *exec.ExitError
		if !errors.As(werr, &exit) {
			fmt.Fprintln(os.Stderr, "netns: test binary:", werr)
			return 1
		}
		code = exit.ExitCode()
		if code < 0 {
			code = 1
		}
	}
	if nsErr != nil {
		fmt.Fprintln(os.Stderr, "netns: read the child's namespace:", nsErr)
		return 1
	}
	if left := lingering(ns, 5*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "netns: FAIL: processes still in the tests' network namespace %s after the tests ended (killed now): %s\n", ns, strings.Join(left, ", "))
		return 1
	}
	return code
}

// lingering returns the processes still in network namespace ns (as
// "pid (comm)") after waiting up to grace for them to go, and kills them:
// they are what the tests started and failed to stop (containerd shims,
// containers), and the namespace lives as long as they do.
func lingering(ns string, grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for {
		pids := inNamespace(ns)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var left []string
			for _, pid := range pids {
				comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
				left = append(left, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func inNamespace(ns string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// configure brings up loopback, the veth pair with the node's address, and
// the Service address on loopback.
func configure() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", nodeLink, "type", "veth", "peer", "name", peerLink},
		{"addr", "add", NodeIP + prefix, "dev", nodeLink},
		{"addr", "add", peerIP + prefix, "dev", peerLink},
		{"link", "set", nodeLink, "up"},
		{"link", "set", peerLink, "up"},
		{"addr", "add", ServiceIP + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Links returns the names of this process's namespace's network
// interfaces. (Not from /sys/class/net: sysfs shows the namespace of
// whoever mounted it, the host's.)
func Links() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ifs))
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return names, nil
}
