// Package helm is the real-node test of dirvol's Helm chart: a cluster of
// its own with one real node (as package realnode starts it), on which dirvol
// is installed with helm install of charts/dirvol instead of deploy/'s
// kustomizations, used, and removed with helm uninstall.
package helm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/netns"
)

var (
	// env is the cluster every test uses; nil when skipReason says why.
	env        *framework.Env
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(framework.EnvKubeconfig) == "" && os.Geteuid() == 0 {
		done, code, err := netns.Enter()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		if done {
			os.Exit(code)
		}
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(framework.EnvKubeconfig) != "" {
		skipReason = "the real-node tests start a cluster of their own; " + framework.EnvKubeconfig + " is set"
		fmt.Fprintln(os.Stderr, "e2e: skipping every test:", skipReason)
		return m.Run()
	}
	linksBefore, _ := netns.Links()
	// Interrupted (Ctrl-C, kill; go test's timeout is SIGQUIT, which
	// cannot be handled usefully): a setup under way is cancelled and
	// cleans up after itself; a running cluster is torn down before
	// exiting, so the host keeps nothing of the node.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		once sync.Once
		mu   sync.Mutex
		stop func()
	)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: %v: tearing the cluster down\n", s)
		cancel()
		mu.Lock()
		running := stop
		mu.Unlock()
		if running != nil {
			once.Do(running)
			os.Exit(1)
		}
	}()
	e, stopCluster, err := framework.Setup(ctx, framework.Options{RealNode: true, Deploy: true, Chart: true, Log: os.Stderr})
	switch {
	case errors.Is(err, framework.ErrSkip):
		skipReason = err.Error()
		fmt.Fprintln(os.Stderr, "e2e: skipping every test:", skipReason)
		return m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "e2e: cluster setup failed:", err)
		return 1
	}
	mu.Lock()
	stop = stopCluster
	mu.Unlock()
	if ctx.Err() != nil { // interrupted as the setup ended
		once.Do(stop)
		return 1
	}
	env = e
	code := m.Run()
	signal.Stop(sigs)
	once.Do(stop)
	// The teardown is part of what is tested: nothing of the node may
	// remain on the host, and of the namespace's interfaces only the
	// pods' bridge may be new (the CNI plugin never deletes it).
	left := e.Local.Leftovers()
	links, _ := netns.Links()
	for _, l := range links {
		if !slices.Contains(linksBefore, l) && l != "cni0" {
			left = append(left, "network interface "+l)
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the real node's teardown left:\n  %s\n", strings.Join(left, "\n  "))
		return 1
	}
	return code
}

// setup returns the cluster for a test, or skips the test when this machine
// cannot build one.
func setup(t *testing.T) *framework.Env {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	return env
}
