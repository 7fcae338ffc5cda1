package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// Pods pinned to each node get their volumes on that node: the scheduler
// selects the node, only that node's provisioner acts, the PV is pinned
// there, and the directory is on that node's disk only.
func TestVolumesFollowPinnedPods(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if len(e.Nodes) < 2 {
		t.Skipf("needs two nodes running dirvol, the cluster has %v", e.Nodes)
	}
	ns := e.NewNamespace(t)
	for i, node := range e.Nodes {
		e.ClaimWithPod(t, ns, fmt.Sprintf("on-%d", i), "dirvol", "16Mi", node)
	}
	for i, node := range e.Nodes {
		name := fmt.Sprintf("on-%d", i)
		if got := e.WaitScheduled(t, ns, name); got != node {
			t.Errorf("pod %s pinned to %s was scheduled to %s", name, node, got)
		}
		_, pv := e.WaitBound(t, ns, name)
		if got := framework.PVNode(pv); got != node {
			t.Errorf("PV of %s is pinned to %q, want %s", name, got, node)
		}
		if got := e.NodesWithPath(t, framework.VolumeDir(pv)); !slices.Equal(got, []string{node}) {
			t.Errorf("volume of %s exists on %v, want only %s", name, got, node)
		}
	}
}

// Every node publishes a CSIStorageCapacity per dirvol StorageClass, and a
// new volume lowers its node's figure by (at least about) its size: the
// driver reports free space minus what existing volumes were promised.
// Not parallel: other tests' volumes would move the figures.
func TestCapacityPerNode(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, class := range []string{"dirvol", "dirvol-retain", "dirvol-archive"} {
		caps, err := e.Capacities(ctx, class)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range e.Nodes {
			if _, ok := caps[n]; !ok {
				t.Errorf("no CSIStorageCapacity for class %s on node %s (have %v)", class, n, caps)
			}
		}
	}

	// The node with the least space: on the local cluster the tmpfs node,
	// whose free space nothing else changes.
	node, before := smallestNode(t, e)
	size := min(before/4, 10<<30) &^ (1<<20 - 1)
	ns := e.NewNamespace(t)
	e.ClaimWithPod(t, ns, "big", "dirvol", resource.NewQuantity(size, resource.BinarySI).String(), node)
	e.WaitBound(t, ns, "big")

	var after int64
	e.Poll(t, fmt.Sprintf("capacity of %s to drop by about %d from %d", node, size, before), func(ctx context.Context) (bool, error) {
		caps, err := e.Capacities(ctx, "dirvol")
		if err != nil {
			return false, nil
		}
		after = caps[node]
		return after <= before-size/2, nil
	})
	t.Logf("node %s: capacity %d before, %d after a %d-byte volume", node, before, after, size)
	if e.Local != nil && before-after < size {
		t.Errorf("capacity on %s dropped by %d, want at least the volume's %d (tmpfs: nothing else writes there)", node, before-after, size)
	}
}

// smallestNode returns the node with the least published capacity for class
// dirvol, and that capacity.
func smallestNode(t *testing.T, e *framework.Env) (string, int64) {
	t.Helper()
	caps, err := e.Capacities(context.Background(), "dirvol")
	if err != nil {
		t.Fatal(err)
	}
	node, least := "", int64(-1)
	for _, n := range e.Nodes {
		if c, ok := caps[n]; ok && (least < 0 || c < least) {
			node, least = n, c
		}
	}
	if node == "" {
		t.Fatalf("no capacity published for class dirvol: %v", caps)
	}
	return node, least
}

// A claim bigger than a node's capacity is never placed on that node: pinned
// there, its pod stays unscheduled for lack of storage; free to go anywhere,
// it lands on a node with room. Not parallel: it sizes claims from the
// current capacities.
func TestClaimTooBigForNode(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	small, capacity := smallestNode(t, e)
	ns := e.NewNamespace(t)

	tooBig := resource.NewQuantity(capacity+64<<20, resource.BinarySI).String()
	e.ClaimWithPod(t, ns, "pinned", "dirvol", tooBig, small)
	ev := e.WaitEvent(t, ns, "pinned", "FailedScheduling")
	if !strings.Contains(ev.Message, "storage") {
		t.Errorf("FailedScheduling does not blame storage: %s", ev.Message)
	}
	time.Sleep(2 * time.Second)
	pod, err := e.Kube.CoreV1().Pods(ns).Get(ctx, "pinned", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "" {
		t.Errorf("pod with a %s claim was scheduled to %s, whose capacity is %d", tooBig, pod.Spec.NodeName, capacity)
	}
	pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "pinned", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.VolumeName != "" {
		t.Errorf("claim bigger than %s's capacity was bound to %s", small, pvc.Spec.VolumeName)
	}

	caps, err := e.Capacities(ctx, "dirvol")
	if err != nil {
		t.Fatal(err)
	}
	largest := slices.Max(mapValues(caps))
	if largest < capacity+256<<20 {
		t.Logf("no node has clearly more room than %s (%d bytes); skipping the unpinned half", small, capacity)
		return
	}
	e.ClaimWithPod(t, ns, "free", "dirvol", tooBig, "")
	_, pv := e.WaitBound(t, ns, "free")
	if got := framework.PVNode(pv); got == small || caps[got] < capacity+64<<20 {
		t.Errorf("a %s claim was placed on %s (capacity %d), capacities %v", tooBig, got, caps[got], caps)
	}
}

func mapValues(m map[string]int64) []int64 {
	out := make([]int64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
