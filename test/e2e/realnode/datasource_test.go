package realnode

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// snapshotClass applies deploy/overlays/snapshot-class's VolumeSnapshotClass
// and returns its name.
func snapshotClass(t *testing.T, e *framework.Env) string {
	t.Helper()
	objs, err := manifests.Render(filepath.Join(e.DeployDir, "overlays", "snapshot-class"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range manifests.Select(objs, "VolumeSnapshotClass") {
		if err := e.Applier.Apply(context.Background(), o, false); err != nil {
			t.Fatal(err)
		}
		return o.GetName()
	}
	t.Fatal("deploy/overlays/snapshot-class has no VolumeSnapshotClass")
	return ""
}

// TestSnapshotRestoreClone: a pod writes into a claim; a VolumeSnapshot of
// it becomes ready (csi-snapshotter in the driver's pod); a claim restored
// from it and a clone of the source claim each hold the file, read by pods
// on the node.
func TestSnapshotRestoreClone(t *testing.T) {
	e := setupDriver(t)
	ctx := context.Background()
	ns := e.NewNamespace(t)
	class := snapshotClass(t, e)
	e.CreatePVC(t, framework.PVC(ns, "source", "dirvol", "32Mi"))
	e.CreatePod(t, claimPod(ns, "writer", "source", false, "echo in-the-source > /data/file && sync"))
	waitRunning(t, e, ns, "writer")
	e.WaitBound(t, ns, "source")

	src := "source"
	snap := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "snap"},
		Spec: snapv1.VolumeSnapshotSpec{
			VolumeSnapshotClassName: &class,
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &src},
		},
	}
	if _, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VolumeSnapshot: %v", err)
	}
	e.Poll(t, "VolumeSnapshot readyToUse", func(ctx context.Context) (bool, error) {
		s, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil || s.Status == nil {
			return false, nil
		}
		return s.Status.ReadyToUse != nil && *s.Status.ReadyToUse, nil
	})
	// Written after the snapshot: the restore must not have it.
	exec(t, e, ns, "writer", "echo after-the-snapshot >> /data/file")

	apiGroup := snapv1.GroupName
	restore := framework.PVC(ns, "restore", "dirvol", "32Mi")
	restore.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: "snap"}
	clone := framework.PVC(ns, "clone", "dirvol", "32Mi")
	clone.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "source"}
	for _, pvc := range []*corev1.PersistentVolumeClaim{restore, clone} {
		e.CreatePVC(t, pvc)
		e.CreatePod(t, claimPod(ns, pvc.Name, pvc.Name, false, "true"))
	}
	waitRunning(t, e, ns, "restore")
	if out := exec(t, e, ns, "restore", "cat /data/file"); out != "in-the-source\n" {
		t.Errorf("restored claim holds %q, want the source as it was at the snapshot", out)
	}
	waitRunning(t, e, ns, "clone")
	if out := exec(t, e, ns, "clone", "cat /data/file"); out != "in-the-source\nafter-the-snapshot\n" {
		t.Errorf("cloned claim holds %q, want the source as it was at the clone", out)
	}
}

// TestOnlineExpansion: a claim on the btrfs image pool, in use by a pod,
// grows from 16Mi to 64Mi (csi-resizer in the driver's pods, the kubelet's
// NodeExpandVolume); the pod, still running, can then write what its old
// size refused.
func TestOnlineExpansion(t *testing.T) {
	e := setupDriver(t)
	ctx := context.Background()
	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol-btrfs", "16Mi"))
	e.CreatePod(t, claimPod(ns, "app", "data", false, "true"))
	waitRunning(t, e, ns, "app")
	e.WaitBound(t, ns, "data")
	if _, _, err := e.Exec(ctx, ns, "app", "app", []string{"sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=32 && sync"}, nil); err == nil {
		t.Fatal("32 MiB fit into a 16 MiB claim: its size is not enforced, so growing it proves nothing")
	}
	exec(t, e, ns, "app", "rm -f /data/big && sync")

	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"resources": map[string]any{"requests": map[string]string{"storage": "64Mi"}}}})
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	want := resource.MustParse("64Mi")
	var last corev1.PersistentVolumeClaimStatus
	defer func() {
		if t.Failed() {
			b, _ := json.Marshal(last)
			t.Logf("claim status: %s", b)
		}
	}()
	e.Poll(t, "claim grown to 64Mi", func(ctx context.Context) (bool, error) {
		pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = pvc.Status
		got := pvc.Status.Capacity[corev1.ResourceStorage]
		for _, c := range pvc.Status.Conditions {
			if strings.Contains(string(c.Type), "Resiz") { // Resizing, FileSystemResizePending, ...ResizeError
				return false, nil
			}
		}
		return got.Cmp(want) >= 0, nil
	})
	// The quota follows once the resize finished; the pod was never
	// restarted.
	e.Poll(t, "a 32 MiB write in the grown claim", func(ctx context.Context) (bool, error) {
		_, _, err := e.Exec(ctx, ns, "app", "app", []string{"sh", "-c", "rm -f /data/big; dd if=/dev/zero of=/data/big bs=1M count=32 && sync"}, nil)
		return err == nil, nil
	})
	if pod, err := e.Kube.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{}); err != nil || pod.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod restarted during the expansion (%v)", err)
	}
}
