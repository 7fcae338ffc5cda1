package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// `kubectl apply --dry-run=server -k` of deploy/base and of every overlay:
// rendered with kustomize's own library, then each object applied with a
// server-side dry run, so the API server runs defaulting, validation and
// admission (RBAC escalation checks, PriorityClass, Pod Security) on it. What
// a dry run cannot do, the test does for real first: CRDs (so their
// instances can be checked) and Namespaces (so namespaced objects have one).
func TestDeployManifestsDryRun(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	dirs, err := manifests.Kustomizations(e.DeployDir)
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string][]*unstructured.Unstructured{}
	for _, dir := range dirs {
		objs, err := manifests.Render(filepath.Join(e.DeployDir, dir))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		rendered[dir] = objs
		// For real, before any dry run: an overlay may hold instances of
		// CRDs another one installs.
		for _, kind := range []string{"CustomResourceDefinition", "Namespace"} {
			for _, o := range manifests.Select(objs, kind) {
				if err := e.Applier.Apply(ctx, o, false); err != nil {
					t.Errorf("%s: %v", dir, err)
				}
			}
		}
		if err := e.Applier.WaitEstablished(ctx, objs); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
	for _, dir := range dirs {
		objs, ok := rendered[dir]
		if !ok {
			continue
		}
		t.Run(dir, func(t *testing.T) {
			if len(objs) == 0 {
				t.Errorf("renders no objects")
			}
			for _, o := range objs {
				if err := e.Applier.Apply(ctx, o, true); err != nil {
					t.Errorf("%v", err)
				}
			}
			t.Logf("%d objects pass the server-side dry run", len(objs))
		})
	}
}
