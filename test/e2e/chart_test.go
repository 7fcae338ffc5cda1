package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/helmchart"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// `helm template` of charts/dirvol with pools of every kind and a default
// class, applied with a server-side dry run: the objects that the chart's
// values add to deploy/base's (host paths and mounts for pools outside the
// data dir, --pool flags, more classes) pass the API server's validation
// and admission. (With its default values the chart is deploy/base, which
// TestDeployManifestsDryRun covers.)
func TestChartDryRun(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	root, err := binaries.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := binaries.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := binaries.EnsureHelm(ctx, filepath.Join(root, "build"), cache, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	h := helmchart.Helm{Bin: bin, Home: t.TempDir()}
	objs, err := h.Template(ctx, "dirvol", filepath.Join(root, "..", "..", "charts", "dirvol"),
		"--values", filepath.Join(root, "helmchart", "testdata", "pools.yaml"), "--set", "defaultStorageClass=dirvol-fast")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range manifests.Select(objs, "Namespace") {
		if err := e.Applier.Apply(ctx, o, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range objs {
		if err := e.Applier.Apply(ctx, o, true); err != nil {
			t.Errorf("%v", err)
		}
	}
	t.Logf("%d objects pass the server-side dry run", len(objs))
}
