// Package conformance runs the Kubernetes external storage test suite
// (upstream's specs, k8s.io/kubernetes/test/e2e/storage/external, v1.37.2)
// against dirvol as deploy/ installs it: on the local cluster's real node
// (containerd, the kubelet, deploy/base's DaemonSet running the dirvol image
// built from this tree), or on the cluster of E2E_KUBECONFIG.
//
// It runs only when E2E_CONFORMANCE names a plan (`make conformance` sets
// it): the suite takes long, and `go test ./...` in test/e2e is not the
// place for it.
package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/images"
	"github.com/dirvol/dirvol/test/e2e/manifests"
	"github.com/dirvol/dirvol/test/e2e/netns"
)

// Environment variables of this package.
const (
	// EnvPlan names the plan (plans): "full" or "ci". Unset, the tests
	// skip.
	EnvPlan = "E2E_CONFORMANCE"
	// EnvReportDir is where the JUnit reports and the suite's output go
	// (default: bin/conformance in the repository).
	EnvReportDir = "E2E_REPORT_DIR"
	// EnvDriverFile replaces the plan's test driver files: a
	// comma-separated list of paths, or of file names in
	// test/e2e/conformance.
	EnvDriverFile = "E2E_TESTDRIVER"
	// EnvProcs is how many Ginkgo processes run specs at once (default
	// 3: the specs mostly wait for pods).
	EnvProcs = "E2E_CONFORMANCE_PROCS"
	// EnvRuns, a comma-separated list of run names, runs only those of
	// the plan; EnvFocus replaces their focus (to check a few specs
	// again).
	EnvRuns  = "E2E_CONFORMANCE_RUNS"
	EnvFocus = "E2E_CONFORMANCE_FOCUS"
)

var (
	env        *framework.Env
	bins       binaries.Set
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(EnvPlan) == "" {
		skipReason = EnvPlan + " is not set: the storage conformance suite runs with `make conformance`"
		os.Exit(m.Run())
	}
	if os.Getenv(framework.EnvKubeconfig) == "" && os.Geteuid() == 0 {
		done, code, err := netns.Enter()
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
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
	root, err := binaries.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	cache, err := binaries.DefaultCacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	if bins, err = binaries.EnsureConformance(ctx, filepath.Join(root, "build"), cache, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: building the suite:", err)
		return 1
	}
	opts := framework.Options{Log: os.Stderr}
	if os.Getenv(framework.EnvKubeconfig) == "" {
		imgDir, err := os.MkdirTemp("", "dirvol-conformance-images-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			return 1
		}
		defer os.RemoveAll(imgDir)
		archives, err := images.Suite(ctx, imgDir, "/bin/busybox", map[string]string{"bin/dd": "/bin/dd", "bin/sh": "/bin/dash"}, bins.Path(binaries.Agnhost))
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance: the suite's images:", err)
			return 1
		}
		opts.RealNode, opts.Deploy, opts.Images = true, true, archives
	}
	linksBefore, _ := netns.Links()
	e, stop, err := framework.Setup(ctx, opts)
	switch {
	case errors.Is(err, framework.ErrSkip):
		skipReason = err.Error()
		fmt.Fprintln(os.Stderr, "conformance: skipping:", skipReason)
		return m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "conformance: cluster setup failed:", err)
		return 1
	}
	env = e
	if e.Local != nil {
		// The driver file names deploy/'s VolumeSnapshotClass as
		// installed; on an existing cluster it is (overlays/kind).
		if err := installSnapshotClass(ctx, e); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: VolumeSnapshotClass:", err)
			stop()
			return 1
		}
	}
	code := m.Run()
	stop()
	if e.Local == nil {
		return code
	}
	// As in the real-node tests: the teardown must leave nothing.
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

// installSnapshotClass applies deploy/overlays/snapshot-class.
func installSnapshotClass(ctx context.Context, e *framework.Env) error {
	objs, err := manifests.Render(filepath.Join(e.DeployDir, "overlays", "snapshot-class"))
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := e.Applier.Apply(ctx, o, false); err != nil {
			return err
		}
	}
	return nil
}
