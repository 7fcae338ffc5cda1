// Package helm is the real-node test of dirvol's Helm chart: a cluster of
// its own with one real node (as package realnode starts it), on which dirvol
// is installed with helm install of charts/dirvol instead of deploy/'s
// kustomizations, used, and removed with helm uninstall.
package helm

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
	os.Exit(framework.RealNodeMain(m, framework.Options{RealNode: true, Deploy: true, Chart: true, Log: os.Stderr}, func(e *framework.Env, reason string) {
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
