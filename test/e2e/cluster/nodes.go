package cluster

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// What a kubelet would do for the scheduler and the provisioners, without
// running pods: the Node object with its topology label, its Ready
// condition and Lease kept fresh, and the CSINode object the kubelet writes
// once the driver has registered with it (the plugin watcher).

// heartbeat is how often the Lease and the Ready condition are renewed; the
// node lifecycle controller marks a node unhealthy after 40s without one.
const heartbeat = 10 * time.Second

// registerNode creates the Node with the labels a kubelet sets (hostname,
// os, and the driver's topology segments as the kubelet copies them from
// NodeGetInfo), and marks it Ready.
func (c *Cluster) registerNode(ctx context.Context, n *Node) error {
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	for k, v := range n.info.Topology {
		labels[k] = v
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels}}
	if _, err := c.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(n.pods), resource.DecimalSI),
	}
	// The controller-manager's node controllers update a new Node too:
	// retry on a conflict with them.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := c.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		latest.Status = corev1.NodeStatus{
			Capacity:    resources,
			Allocatable: resources,
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: n.Name}},
			Conditions:  nodeConditions(time.Now()),
			NodeInfo:    corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.37.2"},
		}
		_, err = c.Kube.CoreV1().Nodes().UpdateStatus(ctx, latest, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s status: %w", n.Name, err)
	}
	return c.renewLease(ctx, n.Name)
}

func nodeConditions(now time.Time) []corev1.NodeCondition {
	t := metav1.NewTime(now)
	cond := func(typ corev1.NodeConditionType, status corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, Reason: reason, LastHeartbeatTime: t, LastTransitionTime: t}
	}
	return []corev1.NodeCondition{
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
	}
}

// renewLease creates or renews the node's Lease in kube-node-lease.
func (c *Cluster) renewLease(ctx context.Context, name string) error {
	leases := c.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		holder, seconds := name, int32(40)
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// heartbeats keeps every node's Lease and Ready condition fresh until ctx
// ends.
func (c *Cluster) heartbeats(ctx context.Context) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, n := range c.Nodes {
			if err := c.renewLease(ctx, n.Name); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Renew node lease", "node", n.Name)
			}
			node, err := c.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			for i := range node.Status.Conditions {
				node.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
			}
			if _, err := c.Kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Update node status", "node", n.Name)
			}
		}
	}, heartbeat)
}

// registerCSINode writes the CSINode object as the kubelet does after the
// driver's registration: driver name, node ID and topology keys from
// NodeGetInfo, owned by the Node.
func (c *Cluster) registerCSINode(ctx context.Context, n *Node) error {
	node, err := c.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(n.info.Topology))
	for k := range n.info.Topology {
		keys = append(keys, k)
	}
	driver := storagev1.CSINodeDriver{Name: n.info.DriverName, NodeID: n.info.NodeID, TopologyKeys: keys}
	if n.info.MaxVolumes > 0 {
		count := int32(n.info.MaxVolumes)
		driver.Allocatable = &storagev1.VolumeNodeResources{Count: &count}
	}
	csiNode := &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}},
		},
		Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{driver}},
	}
	if _, err := c.Kube.StorageV1().CSINodes().Create(ctx, csiNode, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create CSINode %s: %w", n.Name, err)
	}
	return nil
}
