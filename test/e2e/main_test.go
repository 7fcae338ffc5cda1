// Package e2e holds the cluster end-to-end tests: dirvol driven by
// Kubernetes (external-provisioner, the PV controller, the scheduler), with
// what happened checked through the API and on the nodes' disks. See
// README.md for how to run them.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/cluster"
	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/netns"
)

var (
	// env is the cluster every test uses; nil when skipReason says why.
	env        *framework.Env
	skipReason string
)

// Nodes of the local cluster: node-0 has the run directory's filesystem (a
// big disk), node-1 a 512 MiB tmpfs, so that capacity decides placement.
var localNodes = []cluster.NodeOptions{
	{Name: "node-0"},
	{Name: "node-1", DiskBytes: 512 << 20},
}

func TestMain(m *testing.M) {
	flag.Parse()
	// The local cluster runs in a network namespace of its own, as the
	// real node's (package realnode) does: nothing it serves is reachable
	// from the host's namespace.
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
	ctx := context.Background()
	e, stop, err := framework.Setup(ctx, framework.Options{Nodes: localNodes, Log: os.Stderr})
	switch {
	case errors.Is(err, framework.ErrSkip):
		skipReason = err.Error()
		fmt.Fprintln(os.Stderr, "e2e: skipping every test:", skipReason)
	case err != nil:
		fmt.Fprintln(os.Stderr, "e2e: cluster setup failed:", err)
		return 1
	default:
		env = e
		defer stop()
	}
	return m.Run()
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
