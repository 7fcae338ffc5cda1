package framework

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

	"github.com/dirvol/dirvol/test/e2e/netns"
)

// RealNodeMain is the TestMain of a package whose tests share one cluster
// with a real node (opts.RealNode): it re-executes the test binary in a
// network namespace of its own, starts the cluster, hands it to use (or nil
// and the reason the tests skip) and runs the tests. The teardown is part of
// what is tested: the exit code is 1 when it leaves anything of the node on
// the host. It returns the code for os.Exit.
func RealNodeMain(m *testing.M, opts Options, use func(e *Env, skipReason string)) int {
	flag.Parse()
	if os.Getenv(EnvKubeconfig) == "" && os.Geteuid() == 0 {
		done, code, err := netns.Enter()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		if done {
			return code
		}
	}
	return runRealNode(m, opts, use)
}

func runRealNode(m *testing.M, opts Options, use func(*Env, string)) int {
	if os.Getenv(EnvKubeconfig) != "" {
		reason := "the real-node tests start a cluster of their own; " + EnvKubeconfig + " is set"
		use(nil, reason)
		fmt.Fprintln(os.Stderr, "e2e: skipping every test:", reason)
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
	e, stopCluster, err := Setup(ctx, opts)
	switch {
	case errors.Is(err, ErrSkip):
		use(nil, err.Error())
		fmt.Fprintln(os.Stderr, "e2e: skipping every test:", err)
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
	use(e, "")
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
