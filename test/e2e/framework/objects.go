package framework

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TopologyKey is the node label and PV node-affinity key dirvol reports.
const TopologyKey = "topology.dirvol.csi.dev/node"

// Pod image: never pulled on the local cluster (no kubelet); on kind it is
// the sandbox image every node already has.
const podImage = "registry.k8s.io/pause:3.10"

// Timeout is how long a wait helper waits before failing the test.
const Timeout = 2 * time.Minute

// Namespace creates a namespace for t, named after the test, and removes it
// (pods first, with grace period 0: no kubelet would ever confirm their end)
// when t ends. If t failed, its events and the cluster's logs are printed
// first.
func (e *Env) NewNamespace(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("e2e-%s-%04x", dnsLabel(t.Name(), 40), rand.IntN(1<<16))
	_, err := e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("events in %s:\n%s", name, e.Events(ctx, name))
			t.Logf("component logs:\n%s", e.Diagnose(40))
		}
		e.DeletePods(t, name)
		if err := e.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	// The API server refuses pods until the namespace's default service
	// account exists.
	e.Poll(t, "service account default in "+name, func(ctx context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

var notDNS = regexp.MustCompile(`[^a-z0-9]+`)

func dnsLabel(s string, max int) string {
	s = strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > max {
		s = strings.TrimRight(s[:max], "-")
	}
	return s
}

// Events returns the namespace's events, oldest first, one a line.
func (e *Env) Events(ctx context.Context, ns string) string {
	list, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].LastTimestamp.Before(&list.Items[j].LastTimestamp)
	})
	var b strings.Builder
	for _, ev := range list.Items {
		fmt.Fprintf(&b, "%s %s/%s %s: %s\n", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message)
	}
	return b.String()
}

// PVC returns a ReadWriteOnce claim of size on class.
func PVC(ns, name, class, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

// Pod returns a pod that mounts claim at /data; with node set it is pinned
// there by the kubernetes.io/hostname label.
func Pod(ns, name, claim, node string) *corev1.Pod {
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name:         "app",
				Image:        podImage,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{
				Name: "data",
				VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
				},
			}},
		},
	}
	if node != "" {
		p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	return p
}

// CreatePVC creates pvc.
func (e *Env) CreatePVC(t testing.TB, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(context.Background(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC %s/%s: %v", pvc.Namespace, pvc.Name, err)
	}
}

// CreatePod creates pod.
func (e *Env) CreatePod(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	if _, err := e.Kube.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// ClaimWithPod creates a claim of size on class and a pod using it (pinned
// to node when node is set); the pod's scheduling triggers provisioning.
func (e *Env) ClaimWithPod(t testing.TB, ns, name, class, size, node string) {
	t.Helper()
	e.CreatePVC(t, PVC(ns, name, class, size))
	e.CreatePod(t, Pod(ns, name, name, node))
}

// DeletePod deletes a pod at once (grace period 0).
func (e *Env) DeletePod(t testing.TB, ns, name string) {
	t.Helper()
	zero := int64(0)
	err := e.Kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete pod %s/%s: %v", ns, name, err)
	}
}

// DeletePods deletes every pod of the namespace at once.
func (e *Env) DeletePods(t testing.TB, ns string) {
	t.Helper()
	zero := int64(0)
	err := e.Kube.CoreV1().Pods(ns).DeleteCollection(context.Background(),
		metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete pods in %s: %v", ns, err)
	}
}

// DeletePVC deletes a claim.
func (e *Env) DeletePVC(t testing.TB, ns, name string) {
	t.Helper()
	err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete PVC %s/%s: %v", ns, name, err)
	}
}

// PVNode returns the node a PV's node affinity names through dirvol's
// topology key ("" when it names none).
func PVNode(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, expr := range term.MatchExpressions {
			if expr.Key == TopologyKey && expr.Operator == corev1.NodeSelectorOpIn && len(expr.Values) == 1 {
				return expr.Values[0]
			}
		}
	}
	return ""
}

// VolumeDir is the volume's directory relative to its node's data dir (the
// default pool): volumes/<volume-id>.
func VolumeDir(pv *corev1.PersistentVolume) string {
	return "volumes/" + pv.Spec.CSI.VolumeHandle
}
