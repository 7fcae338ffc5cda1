package helm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/helmchart"
	"github.com/dirvol/dirvol/test/e2e/images"
)

// TestHelmInstallOnRealNode: dirvol installed by helm install of
// charts/dirvol (TestMain: the chart's default values, the sidecar images
// swapped with --set for the harness's) runs on the real node: a pod writes
// into a claim of class dirvol, the file is in the volume's directory on the
// node, a second pod reads it; deleting the claim deletes the directory.
// Then helm uninstall removes every object of the release, the driver leaves
// the node's CSINode, and helm keeps no record of the release.
func TestHelmInstallOnRealNode(t *testing.T) {
	e := setup(t)
	if e.Chart == nil || e.Local.Real.DriverPod == "" {
		t.Fatal("dirvol was not installed with helm on the real node")
	}
	ctx := context.Background()
	ci := e.Chart
	manifest, err := ci.Helm.Run(ctx, "get", "manifest", ci.Release, "--namespace", ci.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helmchart.Parse(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("release %s has no objects", ci.Release)
	}
	// What runs is the release's: each object exists, marked as helm's.
	for _, o := range objs {
		got, err := e.Applier.Get(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", helmchart.KeyOf(o), err)
		}
		if r := got.GetAnnotations()["meta.helm.sh/release-name"]; r != ci.Release {
			t.Errorf("%s: release-name annotation %q, want %q", helmchart.KeyOf(o), r, ci.Release)
		}
	}
	driverPod, err := e.Kube.CoreV1().Pods(e.Local.Real.DriverNamespace).Get(ctx, e.Local.Real.DriverPod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range driverPod.Spec.Containers {
		if c.Name != "dirvol" && !strings.HasPrefix(c.Image, "dirvol.test/"+c.Name+":") {
			t.Errorf("container %s runs %s, not the harness's image that --set gave it", c.Name, c.Image)
		}
	}

	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol", "64Mi"))
	writer := claimPod(ns, "writer", "echo written-through-helm > /data/file")
	e.CreatePod(t, writer)
	waitReady(t, e, ns, "writer")
	_, pv := e.WaitBound(t, ns, "data")
	dir := filepath.Join(framework.RealNodeDataDir, framework.VolumeDir(pv))
	if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(b) != "written-through-helm\n" {
		t.Errorf("file in the volume's directory %s on the node: %q, %v", dir, b, err)
	}
	deletePod(t, e, ns, "writer")
	e.CreatePod(t, claimPod(ns, "reader", "grep -q written-through-helm /data/file"))
	waitReady(t, e, ns, "reader")
	deletePod(t, e, ns, "reader")
	e.DeletePVC(t, ns, "data")
	e.WaitPVGone(t, pv.Name)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("volume directory %s after its claim and PV are gone: %v", dir, err)
	}

	if out, err := ci.Helm.Run(ctx, "uninstall", ci.Release, "--namespace", ci.Namespace, "--wait", "--timeout", "2m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, o := range objs {
		e.Poll(t, helmchart.KeyOf(o).String()+" deleted", func(ctx context.Context) (bool, error) {
			_, err := e.Applier.Get(ctx, o)
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
	}
	e.Poll(t, "driver dirvol.csi.dev gone from CSINode "+framework.RealNodeName, func(ctx context.Context) (bool, error) {
		cn, err := e.Kube.StorageV1().CSINodes().Get(ctx, framework.RealNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, d := range cn.Spec.Drivers {
			if d.Name == framework.DriverName {
				return false, nil
			}
		}
		return true, nil
	})
	caps, err := e.Kube.StorageV1().CSIStorageCapacities(corev1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps.Items {
		t.Errorf("CSIStorageCapacity %s/%s (class %s) left", c.Namespace, c.Name, c.StorageClassName)
	}
	pods, err := e.Kube.CoreV1().Pods(e.Local.Real.DriverNamespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			t.Errorf("pod %s/%s left", p.Namespace, p.Name)
		}
	}
	list, err := ci.Helm.Run(ctx, "list", "--all-namespaces", "--short")
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(list)); s != "" {
		t.Errorf("helm still lists releases after uninstall: %s", s)
	}
	secrets, err := e.Kube.CoreV1().Secrets(ci.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("helm's release record %s/%s left", s.Namespace, s.Name)
	}
}

// claimPod is a busybox pod on the real node with the claim at /data,
// turning ready once script has succeeded.
func claimPod(ns, name, script string) *corev1.Pod {
	one := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": framework.RealNodeName},
			TerminationGracePeriodSeconds: &one,
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           images.BusyboxRef,
				ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "trap 'exit 0' TERM; if " + script + "; then touch /tmp/script-done; else echo script failed >&2; fi; " +
					"while true; do sleep 1; done"},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/tmp/script-done"}}},
					PeriodSeconds: 1,
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"},
			}}},
		},
	}
}

// waitReady waits for the pod's script to have succeeded (its container
// ready).
func waitReady(t *testing.T, e *framework.Env, ns, name string) {
	t.Helper()
	e.Poll(t, "pod "+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		p, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.ContainersReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// deletePod deletes a pod gracefully and waits until the kubelet has
// finished it (its volumes unpublished) and the API no longer has it.
func deletePod(t *testing.T, e *framework.Env, ns, name string) {
	t.Helper()
	one := int64(1)
	err := e.Kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &one})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	e.Poll(t, "pod "+ns+"/"+name+" gone", func(ctx context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}
