package realnode

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/hoststate"
	"github.com/dirvol/dirvol/test/e2e/images"
	"github.com/dirvol/dirvol/test/e2e/netns"
)

// busyboxPod is a pod on the real node running script in the busybox image
// with an emptyDir at /scratch. It turns ready once script has succeeded
// (so a test that waits for it sees what the script did). The shell traps
// TERM so the pod stops as soon as it is asked to.
func busyboxPod(ns, name, script string) *corev1.Pod {
	one := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			// Through the scheduler, which also picks the node for
			// WaitForFirstConsumer claims.
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
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
			}},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// waitRunning waits for the pod's containers to be ready and returns it.
func waitRunning(t *testing.T, e *framework.Env, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	e.Poll(t, "pod "+ns+"/"+name+" running", func(ctx context.Context) (bool, error) {
		p, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.ContainersReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

// waitPodGone waits until the kubelet has finished the deleted pod and the
// API no longer has it.
func waitPodGone(t *testing.T, e *framework.Env, ns, name string) {
	t.Helper()
	e.Poll(t, "pod "+ns+"/"+name+" gone", func(ctx context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// podDir is the kubelet's directory of a pod on this host.
func podDir(uid types.UID) string { return filepath.Join("/var/lib/kubelet/pods", string(uid)) }

// TestPodRuns: a busybox pod on the real node writes into an emptyDir;
// pods/exec (with and without stdin) and the container's log work through
// kube-apiserver, which reaches the kubelet at the node's address and checks
// its serving certificate, through client-go and through kubectl; the files
// are where the kubelet keeps the emptyDir on this host; deleting the pod
// removes them and unmounts everything of the pod.
func TestPodRuns(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ns := e.NewNamespace(t)

	node, err := e.Kube.CoreV1().Nodes().Get(ctx, framework.RealNodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var internal string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != netns.NodeIP {
		t.Errorf("node %s InternalIP = %q, want %s (the kubelet's --node-ip)", node.Name, internal, netns.NodeIP)
	}

	e.CreatePod(t, busyboxPod(ns, "writer", "echo written-by-pod > /scratch/file && echo started-writer"))
	pod := waitRunning(t, e, ns, "writer")
	if ip := net.ParseIP(pod.Status.PodIP); ip == nil || !strings.HasPrefix(ip.String(), "10.88.") {
		t.Errorf("pod IP = %q, want one of the CNI bridge's 10.88.0.0/16", pod.Status.PodIP)
	}

	out, _, err := e.Exec(ctx, ns, "writer", "app", []string{"cat", "/scratch/file"}, nil)
	if err != nil || out != "written-by-pod\n" {
		t.Fatalf("exec cat /scratch/file = %q, %v; want the line the pod wrote", out, err)
	}
	if _, _, err := e.Exec(ctx, ns, "writer", "app", []string{"sh", "-c", "cat > /scratch/from-stdin"}, strings.NewReader("sent-on-stdin")); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := e.Exec(ctx, ns, "writer", "app", []string{"sh", "-c", "echo to-stderr >&2; exit 3"}, nil)
	if err == nil || stderr != "to-stderr\n" {
		t.Errorf("exec of a command that fails: err %v, stderr %q; want an error and its stderr", err, stderr)
	}

	e.Poll(t, "the pod's log", func(ctx context.Context) (bool, error) {
		logs, err := e.Logs(ctx, ns, "writer", "app")
		return err == nil && strings.Contains(logs, "started-writer"), nil
	})

	// The same through the kubectl binary, as users and the storage
	// conformance suite run it.
	if out, err := e.Kubectl(ctx, nil, "exec", "-n", ns, "writer", "-c", "app", "--", "cat", "/scratch/file"); err != nil || out != "written-by-pod\n" {
		t.Errorf("kubectl exec cat = %q, %v; want the line the pod wrote", out, err)
	}
	// Exec with stdin can lose the input upstream: the command runs and
	// exits 0 with an empty stdin, rarely
	// (kubernetes/kubernetes#112834). A lost input is retried, logged,
	// up to three times; the file is checked on the host below.
	scratch := filepath.Join(podDir(pod.UID), "volumes", "kubernetes.io~empty-dir", "scratch")
	for attempt := 1; attempt <= 3; attempt++ {
		if _, err := e.Kubectl(ctx, strings.NewReader("sent-to-kubectl"), "exec", "-i", "-n", ns, "writer", "--", "sh", "-c", "cat > /scratch/from-kubectl"); err != nil {
			t.Error(err)
			break
		}
		if b, err := os.ReadFile(filepath.Join(scratch, "from-kubectl")); err == nil && len(b) == 0 {
			t.Logf("kubectl exec -i, attempt %d: the command ran with an empty stdin", attempt)
			continue
		}
		break
	}
	if out, err := e.Kubectl(ctx, nil, "logs", "-n", ns, "writer"); err != nil || !strings.Contains(out, "started-writer") {
		t.Errorf("kubectl logs = %q, %v; want the pod's line", out, err)
	}

	for file, want := range map[string]string{"file": "written-by-pod\n", "from-stdin": "sent-on-stdin", "from-kubectl": "sent-to-kubectl"} {
		if b, err := os.ReadFile(filepath.Join(scratch, file)); err != nil || string(b) != want {
			t.Errorf("%s on the host = %q, %v; want %q", file, b, err, want)
		}
	}

	one := int64(1)
	if err := e.Kube.CoreV1().Pods(ns).Delete(ctx, "writer", metav1.DeleteOptions{GracePeriodSeconds: &one}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, e, ns, "writer")
	// The kubelet's housekeeping removes the directory of a pod it has
	// finished, after unmounting its volumes.
	e.Poll(t, "pod directory "+podDir(pod.UID)+" removed", func(context.Context) (bool, error) {
		_, err := os.Stat(podDir(pod.UID))
		return os.IsNotExist(err), nil
	})
	mounts, err := hoststate.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if strings.HasPrefix(m, podDir(pod.UID)) {
			t.Errorf("mount %s left after the pod is gone", m)
		}
	}
}
