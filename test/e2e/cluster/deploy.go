package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// deployDriver applies the kustomization at dir (deploy/base through the
// harness's image overlay) for real, and waits until the DaemonSet's pod on
// the real node is ready and the kubelet has registered the driver in the
// node's CSINode.
func (c *Cluster) deployDriver(ctx context.Context, r *RealNode, dir string) error {
	objs, err := manifests.Render(dir)
	if err != nil {
		return err
	}
	// CRDs and Namespaces first, so the objects that need them apply.
	for _, first := range []bool{true, false} {
		for _, o := range objs {
			if (o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace") != first {
				continue
			}
			if err := c.Applier.Apply(ctx, o, false); err != nil {
				return err
			}
		}
		if first {
			if err := c.Applier.WaitEstablished(ctx, manifests.Select(objs, "CustomResourceDefinition")); err != nil {
				return err
			}
		}
	}
	if err := prepareHost(r, objs); err != nil {
		return err
	}
	return c.waitDriver(ctx, r)
}

// prepareHost readies the host for the DaemonSet among objs (the driver's
// namespace, shared host paths) before its pod starts.
func prepareHost(r *RealNode, objs []*unstructured.Unstructured) error {
	for _, ds := range manifests.Select(objs, "DaemonSet") {
		r.DriverNamespace = ds.GetNamespace()
		if err := shareBidirectionalHostPaths(ds.Object); err != nil {
			return err
		}
	}
	return nil
}

// waitDriver waits until the DaemonSet's pod on the real node is ready and
// the kubelet has registered the driver in the node's CSINode.
func (c *Cluster) waitDriver(ctx context.Context, r *RealNode) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	last := "no pod yet"
	for {
		pod, status := c.driverPod(ctx, r)
		if pod != "" {
			r.DriverPod = pod
			if ok, why := c.csiNodeHas(ctx, r.Name); ok {
				return nil
			} else {
				status = why
			}
		}
		last = status
		select {
		case <-ctx.Done():
			return fmt.Errorf("dirvol on node %s: %s: %w\nlast lines of the kubelet's log:\n%s", r.Name, last, ctx.Err(), r.kubelet.Tail(20))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// driverPod returns the name of the driver's pod on r once all its
// containers are ready, or why not.
func (c *Cluster) driverPod(ctx context.Context, r *RealNode) (string, string) {
	pods, err := c.Kube.CoreV1().Pods(r.DriverNamespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", r.Name).String(),
	})
	if err != nil {
		return "", err.Error()
	}
	for _, p := range pods.Items {
		var waiting []string
		for _, s := range p.Status.ContainerStatuses {
			if !s.Ready {
				state := "not ready"
				if s.State.Waiting != nil {
					state = s.State.Waiting.Reason + " " + s.State.Waiting.Message
				}
				if s.State.Terminated != nil {
					state = fmt.Sprintf("terminated %s (exit %d) %s", s.State.Terminated.Reason, s.State.Terminated.ExitCode, s.State.Terminated.Message)
				}
				waiting = append(waiting, s.Name+": "+state)
			}
		}
		if p.Status.Phase == corev1.PodRunning && len(waiting) == 0 && len(p.Status.ContainerStatuses) > 0 {
			return p.Name, ""
		}
		return "", fmt.Sprintf("pod %s %s: %s", p.Name, p.Status.Phase, strings.Join(waiting, "; "))
	}
	return "", "no pod on the node"
}

// csiNodeHas reports whether the node's CSINode lists the driver the
// cluster's CSIDriver names (the kubelet writes it after the driver's
// registration).
func (c *Cluster) csiNodeHas(ctx context.Context, node string) (bool, string) {
	drivers := manifests.Select(c.base, "CSIDriver")
	if len(drivers) == 0 {
		return true, ""
	}
	name := drivers[0].GetName()
	cn, err := c.Kube.StorageV1().CSINodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, "CSINode: " + err.Error()
	}
	for _, d := range cn.Spec.Drivers {
		if d.Name == name {
			return true, ""
		}
	}
	return false, "driver " + name + " not registered in CSINode " + node
}

// shareBidirectionalHostPaths makes each hostPath that a container of the
// workload mounts with Bidirectional propagation a shared mount, as a
// systemd host has every mount (the runtime refuses Bidirectional on a
// private one; this machine's / is private): a directory outside the
// kubelet's root (which the kubelet makes shared itself) is bind-mounted
// onto itself and made rshared. The teardown unmounts it with the rest.
func shareBidirectionalHostPaths(obj map[string]any) error {
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &ds); err != nil {
		return err
	}
	bidirectional := map[string]bool{}
	for _, ctr := range ds.Spec.Template.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				bidirectional[m.Name] = true
			}
		}
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if !bidirectional[v.Name] || v.HostPath == nil {
			continue
		}
		p := filepath.Clean(v.HostPath.Path)
		if p == kubeletRootDir || strings.HasPrefix(p, kubeletRootDir+"/") {
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", p, err)
		}
		if err := unix.Mount("", p, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s a shared mount: %w", p, err)
		}
	}
	return nil
}
