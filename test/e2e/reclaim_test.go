package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// provisionWithData provisions a claim of class, writes a file into the
// volume's directory on its node, and returns the PV and the node.
func provisionWithData(t *testing.T, e *framework.Env, ns, name, class string) (*corev1.PersistentVolume, string) {
	t.Helper()
	e.ClaimWithPod(t, ns, name, class, "32Mi", "")
	_, pv := e.WaitBound(t, ns, name)
	node := framework.PVNode(pv)
	if node == "" {
		t.Fatalf("PV %s has no %s node affinity: %+v", pv.Name, framework.TopologyKey, pv.Spec.NodeAffinity)
	}
	if err := e.Disk.WriteFile(context.Background(), node, framework.VolumeDir(pv)+"/data.txt", []byte(name)); err != nil {
		t.Fatalf("write into the volume on %s: %v", node, err)
	}
	return pv, node
}

// releaseClaim deletes the pod and the claim, as a user ending with a volume.
func releaseClaim(t *testing.T, e *framework.Env, ns, name string) {
	t.Helper()
	e.DeletePod(t, ns, name)
	e.DeletePVC(t, ns, name)
}

// StorageClass dirvol (reclaimPolicy Delete, onDelete delete): deleting the
// claim deletes the PV and the directory, and archives nothing.
func TestReclaimDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ns := e.NewNamespace(t)
	pv, node := provisionWithData(t, e, ns, "data", "dirvol")

	releaseClaim(t, e, ns, "data")
	e.WaitPVGone(t, pv.Name)
	e.WaitPath(t, node, framework.VolumeDir(pv), false)
	if name, ok := framework.HasPrefix(e.ListDir(t, node, "archive"), ns+"_"); ok {
		t.Errorf("reclaim Delete archived the data as archive/%s", name)
	}
}

// StorageClass dirvol-retain (reclaimPolicy Retain): the PV goes Released and
// keeps the data; deleting the PV by hand does not call the driver, so the
// data stays.
func TestReclaimRetain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ns := e.NewNamespace(t)
	pv, node := provisionWithData(t, e, ns, "data", "dirvol-retain")
	file := framework.VolumeDir(pv) + "/data.txt"

	releaseClaim(t, e, ns, "data")
	e.WaitPVPhase(t, pv.Name, corev1.VolumeReleased)
	checkData(t, e, node, file, "data")

	if err := e.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete released PV: %v", err)
	}
	e.WaitPVGone(t, pv.Name)
	// Nothing should touch the directory now; give a wrong DeleteVolume
	// time to happen before looking.
	time.Sleep(3 * time.Second)
	checkData(t, e, node, file, "data")
}

// StorageClass dirvol-archive (onDelete archive): deleting the claim deletes
// the PV and moves the data to archive/<namespace>_<claim>_...
func TestReclaimArchive(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ns := e.NewNamespace(t)
	pv, node := provisionWithData(t, e, ns, "data", "dirvol-archive")

	releaseClaim(t, e, ns, "data")
	e.WaitPVGone(t, pv.Name)
	e.WaitPath(t, node, framework.VolumeDir(pv), false)
	names := e.ListDir(t, node, "archive")
	name, ok := framework.HasPrefix(names, ns+"_data_")
	if !ok {
		t.Fatalf("archive/ on %s holds %v, want an entry starting %s_data_", node, names, ns)
	}
	if !strings.Contains(name, pv.Name) {
		t.Errorf("archive entry %s does not name the PV %s", name, pv.Name)
	}
	checkData(t, e, node, "archive/"+name+"/data.txt", "data")
}

func checkData(t *testing.T, e *framework.Env, node, file, want string) {
	t.Helper()
	got, err := e.Disk.ReadFile(context.Background(), node, file)
	if err != nil {
		t.Fatalf("data on %s: %v", node, err)
	}
	if string(got) != want {
		t.Fatalf("%s on %s holds %q, want %q", file, node, got, want)
	}
}
