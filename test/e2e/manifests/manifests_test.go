package manifests

import (
	"path/filepath"
	"testing"
)

// Every kustomization in deploy/ renders, without a cluster (the server-side
// dry run is in the e2e tests).
func TestRenderDeploy(t *testing.T) {
	deploy := filepath.Join("..", "..", "..", "deploy")
	dirs, err := Kustomizations(deploy)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("found kustomizations %v, want base and overlays", dirs)
	}
	for _, dir := range dirs {
		objs, err := Render(filepath.Join(deploy, dir))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		t.Logf("%s: %d objects", dir, len(objs))
	}
	base, err := Render(filepath.Join(deploy, "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"csi-provisioner"} {
		if _, ok, err := Container(base, "dirvol-node", name); err != nil || !ok {
			t.Errorf("deploy/base DaemonSet dirvol-node has no %s container (err %v); the e2e harness runs it with that container's arguments", name, err)
		}
	}
}
