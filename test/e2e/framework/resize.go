package framework

import (
	"context"
	"regexp"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resizerLease is the Lease, in the driver's namespace, that the
// csi-resizers of all nodes elect their leader with: external-resizer names
// it after the driver, with what is not a letter, digit or '-' made '-'.
var resizerLease = "external-resizer-" + regexp.MustCompile("[^a-zA-Z0-9-]").ReplaceAllString(DriverName, "-")

// ResizerLeader waits until a csi-resizer holds the Lease and returns the
// node it runs on: the holder is the node's name on the local cluster (each
// resizer's host name, see cluster.startResizer), a dirvol pod's name on an
// existing cluster.
func (e *Env) ResizerLeader(t testing.TB) string {
	t.Helper()
	var node string
	e.Poll(t, "a csi-resizer to lead (Lease "+e.Namespace+"/"+resizerLease+")", func(ctx context.Context) (bool, error) {
		l, err := e.Kube.CoordinationV1().Leases(e.Namespace).Get(ctx, resizerLease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return false, nil
		}
		holder := *l.Spec.HolderIdentity
		if e.Local != nil {
			node = holder
			return true, nil
		}
		pod, err := e.Kube.CoreV1().Pods(e.Namespace).Get(ctx, holder, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		node = pod.Spec.NodeName
		return node != "", nil
	})
	return node
}

// NodeCSI returns a connection to the CSI endpoint of node's driver, as the
// kubelet there dials it; ok is false on an existing cluster, whose sockets
// are inside the nodes.
func (e *Env) NodeCSI(t testing.TB, node string) (conn *grpc.ClientConn, ok bool) {
	t.Helper()
	if e.Local == nil {
		return nil, false
	}
	for _, n := range e.Local.Nodes {
		if n.Name != node {
			continue
		}
		conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("dial the driver of %s: %v", node, err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn, true
	}
	t.Fatalf("no node %s in the local cluster", node)
	return nil, false
}
