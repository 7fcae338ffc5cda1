// Package realnode holds the cluster end-to-end tests that need pods to run:
// a cluster of its own with one real node (containerd, runc, the kubelet
// built from the pinned Kubernetes release, the CNI bridge), all of it, and
// the tests, inside a network namespace the test binary makes for itself.
package realnode

import (
	"os"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

var (
	// env is the cluster every test uses; nil when skipReason says why.
	env        *framework.Env
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(framework.RealNodeMain(m, framework.Options{RealNode: true, Deploy: true, Log: os.Stderr}, func(e *framework.Env, reason string) {
		env, skipReason = e, reason
	}))
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
