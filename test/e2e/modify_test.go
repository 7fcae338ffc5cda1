package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// archiveClass is deploy/base's VolumeAttributesClass that switches a
// volume to onDelete archive.
const archiveClass = "dirvol-archive-on-delete"

// An admin switches a claim of StorageClass dirvol (onDelete delete) to
// archive before deleting it, through a VolumeAttributesClass: csi-resizer
// calls ControllerModifyVolume, the PV and the claim's status show the
// class, and deleting the claim archives the data instead of deleting it.
// A class that sets what cannot change (the pool) is refused first: the
// claim's modify status says Infeasible and names the key.
//
// csi-resizer calls the driver of the node where it leads, and a volume's
// record is on its own node, so the claim is placed on the leader's node.
func TestModifyVolumeArchiveOnDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	requireCapability(t, e, csi.ControllerServiceCapability_RPC_MODIFY_VOLUME)
	ctx := context.Background()
	ns := e.NewNamespace(t)
	leader := e.ResizerLeader(t)
	t.Logf("csi-resizer of %s leads", leader)

	e.ClaimWithPod(t, ns, "data", "dirvol", "32Mi", leader)
	_, pv := e.WaitBound(t, ns, "data")
	node := framework.PVNode(pv)
	if node != leader {
		t.Fatalf("PV %s is on %s, not on the resizer leader's node %s", pv.Name, node, leader)
	}
	if err := e.Disk.WriteFile(ctx, node, framework.VolumeDir(pv)+"/data.txt", []byte("data")); err != nil {
		t.Fatalf("write into the volume on %s: %v", node, err)
	}

	// A class of the test's own that sets the pool: refused.
	bad := &storagev1.VolumeAttributesClass{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-pool"},
		DriverName: framework.DriverName,
		Parameters: map[string]string{"pool": "other"},
	}
	if _, err := e.Kube.StorageV1().VolumeAttributesClasses().Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VolumeAttributesClass %s: %v", bad.Name, err)
	}
	t.Cleanup(func() {
		_ = e.Kube.StorageV1().VolumeAttributesClasses().Delete(context.Background(), bad.Name, metav1.DeleteOptions{})
	})
	setClass(t, e, ns, "data", bad.Name)
	e.Poll(t, "PVC "+ns+"/data modify status Infeasible", func(ctx context.Context) (bool, error) {
		pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil || pvc.Status.ModifyVolumeStatus == nil {
			return false, nil
		}
		return pvc.Status.ModifyVolumeStatus.Status == corev1.PersistentVolumeClaimModifyVolumeInfeasible, nil
	})
	if ev := e.FindEvent(ns, "data", "VolumeModifyFailed", 30*time.Second); ev == nil {
		t.Errorf("no VolumeModifyFailed event on PVC %s/data\n%s", ns, e.Events(ctx, ns))
	} else if !strings.Contains(ev.Message, `"pool"`) {
		t.Errorf("the refusal does not name the key: %q", ev.Message)
	}
	conn, local := e.NodeCSI(t, node)
	if local {
		if got := recordedOnDelete(t, conn, pv.Spec.CSI.VolumeHandle); got != "delete" {
			t.Errorf("after the refused class, volume %s is recorded with onDelete %q, want delete", pv.Spec.CSI.VolumeHandle, got)
		}
	}

	setClass(t, e, ns, "data", archiveClass)
	e.Poll(t, "PV "+pv.Name+" and PVC "+ns+"/data with class "+archiveClass, func(ctx context.Context) (bool, error) {
		pv, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil || pv.Spec.VolumeAttributesClassName == nil || *pv.Spec.VolumeAttributesClassName != archiveClass {
			return false, nil
		}
		pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil || pvc.Status.CurrentVolumeAttributesClassName == nil {
			return false, nil
		}
		return *pvc.Status.CurrentVolumeAttributesClassName == archiveClass, nil
	})
	if local {
		if got := recordedOnDelete(t, conn, pv.Spec.CSI.VolumeHandle); got != "archive" {
			t.Errorf("volume %s is recorded with onDelete %q, want archive", pv.Spec.CSI.VolumeHandle, got)
		}
	}

	releaseClaim(t, e, ns, "data")
	e.WaitPVGone(t, pv.Name)
	e.WaitPath(t, node, framework.VolumeDir(pv), false)
	names := e.ListDir(t, node, "archive")
	name, ok := framework.HasPrefix(names, ns+"_data_")
	if !ok {
		t.Fatalf("archive/ on %s holds %v, want an entry starting %s_data_", node, names, ns)
	}
	checkData(t, e, node, "archive/"+name+"/data.txt", "data")
}

// setClass sets a claim's volumeAttributesClassName.
func setClass(t *testing.T, e *framework.Env, ns, name, class string) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"volumeAttributesClassName": class}})
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("set volumeAttributesClassName of PVC %s/%s to %s: %v", ns, name, class, err)
	}
}

// recordedOnDelete asks the node's driver for the reclaim policy its
// catalog records for volume id.
func recordedOnDelete(t *testing.T, conn *grpc.ClientConn, id string) string {
	t.Helper()
	resp, err := csi.NewControllerClient(conn).ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatalf("ControllerGetVolume %s: %v", id, err)
	}
	return resp.GetVolume().GetVolumeContext()["onDelete"]
}
