package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// A claim grows through csi-resizer as deploy/ runs it: one resizer, the
// leader of all nodes', calls ControllerExpandVolume on its own node's
// driver. A volume on the leader's node is grown there and the claim's size
// is final; a volume on another node is left to the kubelet of that node
// (node_expansion_required), which calls NodeExpandVolume on its own
// driver. The local cluster has no kubelets, so the test makes that call as
// the kubelet would and checks the volume's record on its node; on an
// existing cluster the kubelets do it and the claims' sizes are final.
func TestExpandVolume(t *testing.T) {
	t.Parallel()
	e := setup(t)
	requireCapability(t, e, csi.ControllerServiceCapability_RPC_EXPAND_VOLUME)
	ctx := context.Background()
	ns := e.NewNamespace(t)
	leader := e.ResizerLeader(t)
	t.Logf("csi-resizer of %s leads", leader)

	const oldSize, newSize = "64Mi", "96Mi"
	newQ, oldQ := resource.MustParse(newSize), resource.MustParse(oldSize)
	newBytes, oldBytes := newQ.Value(), oldQ.Value()
	type claim struct {
		name, node string
		pod        *corev1.Pod
		pv         *corev1.PersistentVolume
	}
	var claims []*claim
	for i, node := range e.Nodes {
		c := &claim{name: fmt.Sprintf("grow-%d", i), node: node}
		e.CreatePVC(t, framework.PVC(ns, c.name, "dirvol", oldSize))
		e.CreatePod(t, framework.Pod(ns, c.name, c.name, node))
		claims = append(claims, c)
	}
	for _, c := range claims {
		_, c.pv = e.WaitBound(t, ns, c.name)
		pod, err := e.Kube.CoreV1().Pods(ns).Get(ctx, c.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.pod = pod
	}

	for _, c := range claims {
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"resources": map[string]any{"requests": map[string]string{"storage": newSize}}}})
		if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, c.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("grow PVC %s/%s to %s: %v", ns, c.name, newSize, err)
		}
	}

	for _, c := range claims {
		e.Poll(t, fmt.Sprintf("PV %s (node %s) at %s", c.pv.Name, c.node, newSize), func(ctx context.Context) (bool, error) {
			pv, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, c.pv.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			q := pv.Spec.Capacity[corev1.ResourceStorage]
			return q.Value() == newBytes, nil
		})
		conn, local := e.NodeCSI(t, c.node)
		if !local || c.node == leader {
			// Grown by ControllerExpandVolume on the leader's node, or by
			// the kubelet of an existing cluster: the claim's size is final.
			waitClaimSize(t, e, ns, c.name, newBytes)
			if local {
				if got := recordedBytes(t, conn, c.pv.Spec.CSI.VolumeHandle); got != newBytes {
					t.Errorf("volume %s on %s (the leader's node) is recorded with %d bytes, want %d", c.pv.Spec.CSI.VolumeHandle, c.node, got, newBytes)
				}
			}
			continue
		}

		// On another node: the resizer leaves the rest to that node's
		// kubelet, and that node's driver has not been touched.
		e.Poll(t, "PVC "+ns+"/"+c.name+" FileSystemResizePending", func(ctx context.Context) (bool, error) {
			pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, c.name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range pvc.Status.Conditions {
				if cond.Type == corev1.PersistentVolumeClaimFileSystemResizePending && cond.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		id := c.pv.Spec.CSI.VolumeHandle
		if got := recordedBytes(t, conn, id); got != oldBytes {
			t.Errorf("before NodeExpandVolume, volume %s on %s is recorded with %d bytes, want %d", id, c.node, got, oldBytes)
		}
		// What the kubelet of that node sends once the pod runs there.
		resp, err := csi.NewNodeClient(conn).NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{
			VolumeId:      id,
			VolumePath:    fmt.Sprintf("/var/lib/kubelet/pods/%s/volumes/kubernetes.io~csi/%s/mount", c.pod.UID, c.pv.Name),
			CapacityRange: &csi.CapacityRange{RequiredBytes: newBytes},
			VolumeCapability: &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			},
		})
		if err != nil {
			t.Fatalf("NodeExpandVolume of %s on %s: %v\n%s", id, c.node, err, e.Diagnose(20, "dirvol-"+c.node))
		}
		if resp.GetCapacityBytes() < newBytes {
			t.Errorf("NodeExpandVolume of %s: capacity %d, want at least %d", id, resp.GetCapacityBytes(), newBytes)
		}
		if got := recordedBytes(t, conn, id); got != newBytes {
			t.Errorf("after NodeExpandVolume, volume %s on %s is recorded with %d bytes, want %d", id, c.node, got, newBytes)
		}
	}
}

// waitClaimSize waits until the claim's status reports size bytes.
func waitClaimSize(t *testing.T, e *framework.Env, ns, name string, size int64) {
	t.Helper()
	e.Poll(t, fmt.Sprintf("PVC %s/%s status capacity %d", ns, name, size), func(ctx context.Context) (bool, error) {
		pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		q := pvc.Status.Capacity[corev1.ResourceStorage]
		return q.Value() == size, nil
	})
}

// recordedBytes asks the node's driver for the size its catalog records for
// volume id.
func recordedBytes(t *testing.T, conn *grpc.ClientConn, id string) int64 {
	t.Helper()
	resp, err := csi.NewControllerClient(conn).ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatalf("ControllerGetVolume %s: %v", id, err)
	}
	return resp.GetVolume().GetCapacityBytes()
}
