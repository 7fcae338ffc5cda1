package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// A VolumeSnapshot of a claim becomes ready (the snapshot-controller labels
// its content with the volume's node; that node's csi-snapshotter takes it),
// and a claim restored from it holds the same data.
func TestSnapshotAndRestore(t *testing.T) {
	t.Parallel()
	e := setup(t)
	requireCapability(t, e, csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT)
	class := snapshotClass(t, e)
	ctx := context.Background()
	ns := e.NewNamespace(t)
	_, node := provisionWithData(t, e, ns, "source", "dirvol")

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
		if s.Status.Error != nil && s.Status.Error.Message != nil {
			t.Logf("VolumeSnapshot error so far: %s", *s.Status.Error.Message)
		}
		return s.Status.ReadyToUse != nil && *s.Status.ReadyToUse, nil
	})

	// The restore lives where the snapshot does: the pod goes to the
	// source's node.
	restore := framework.PVC(ns, "restore", "dirvol", "32Mi")
	apiGroup := snapv1.GroupName
	restore.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: "snap"}
	e.CreatePVC(t, restore)
	e.CreatePod(t, framework.Pod(ns, "restore", "restore", node))
	_, pv := e.WaitBound(t, ns, "restore")
	if got := framework.PVNode(pv); got != node {
		t.Errorf("restored volume is on %q, want the snapshot's node %s", got, node)
	}
	checkData(t, e, node, framework.VolumeDir(pv)+"/data.txt", "source")
}

// A claim cloned from another (dataSource: the claim) holds the same data,
// on the same node.
func TestClone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	requireCapability(t, e, csi.ControllerServiceCapability_RPC_CLONE_VOLUME)
	ns := e.NewNamespace(t)
	_, node := provisionWithData(t, e, ns, "source", "dirvol")

	clone := framework.PVC(ns, "clone", "dirvol", "32Mi")
	clone.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "source"}
	e.CreatePVC(t, clone)
	e.CreatePod(t, framework.Pod(ns, "clone", "clone", node))
	_, pv := e.WaitBound(t, ns, "clone")
	if got := framework.PVNode(pv); got != node {
		t.Errorf("clone is on %q, want the source's node %s", got, node)
	}
	checkData(t, e, node, framework.VolumeDir(pv)+"/data.txt", "source")
}

func requireCapability(t *testing.T, e *framework.Env, c csi.ControllerServiceCapability_RPC_Type) {
	t.Helper()
	if !e.Supports(context.Background(), c) {
		t.Skipf("the driver does not advertise %s yet", c)
	}
}

// snapshotClass installs deploy/'s VolumeSnapshotClass (overlays/
// snapshot-class) for real and returns its name; without that overlay it
// makes an equivalent one.
func snapshotClass(t *testing.T, e *framework.Env) string {
	t.Helper()
	ctx := context.Background()
	objs, err := manifests.Render(filepath.Join(e.DeployDir, "overlays", "snapshot-class"))
	if err == nil {
		for _, o := range manifests.Select(objs, "VolumeSnapshotClass") {
			if err := e.Applier.Apply(ctx, o, false); err != nil {
				t.Fatal(err)
			}
			return o.GetName()
		}
	}
	vsc := &snapv1.VolumeSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: "dirvol"},
		Driver:         framework.DriverName,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}
	_, err = e.Snap.SnapshotV1().VolumeSnapshotClasses().Create(ctx, vsc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create VolumeSnapshotClass: %v", err)
	}
	return vsc.Name
}
