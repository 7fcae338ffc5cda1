package e2e

import (
	"slices"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// A pod with a claim on StorageClass dirvol: the scheduler picks a node, the
// provisioner on that node creates the volume there, the PV controller binds
// it, and the PV is pinned to the node; the directory exists on that node's
// disk and no other.
func TestProvisionOnScheduledNode(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ns := e.NewNamespace(t)

	e.ClaimWithPod(t, ns, "data", "dirvol", "64Mi", "")
	node := e.WaitScheduled(t, ns, "data")
	pvc, pv := e.WaitBound(t, ns, "data")

	if got := pvc.Annotations["volume.kubernetes.io/selected-node"]; got != node {
		t.Errorf("PVC selected-node annotation = %q, want the pod's node %q", got, node)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != framework.DriverName {
		t.Fatalf("PV %s is not a %s volume: %+v", pv.Name, framework.DriverName, pv.Spec.PersistentVolumeSource)
	}
	if got := framework.PVNode(pv); got != node {
		t.Errorf("PV node affinity names node %q, want %q (affinity %+v)", got, node, pv.Spec.NodeAffinity)
	}
	if got := pv.Spec.Capacity.Storage().Value(); got < 64<<20 {
		t.Errorf("PV capacity %d, want at least the requested 64Mi", got)
	}
	dir := framework.VolumeDir(pv)
	if got := e.NodesWithPath(t, dir); !slices.Equal(got, []string{node}) {
		t.Errorf("%s exists on nodes %v, want only %s", dir, got, node)
	}
}
