package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
	"github.com/dirvol/dirvol/test/e2e/hoststate"
)

// Tests of dirvol as deploy/ installs it, on the real node: the kubelet
// mounts the volumes (NodePublishVolume through the driver's DaemonSet pod)
// and pods read and write them.

// claimPod is a busybox pod on the real node with claim at /data (or, for
// a block claim, as the device /dev/block), running script and then
// waiting to be stopped.
func claimPod(ns, name, claim string, block bool, script string) *corev1.Pod {
	p := busyboxPod(ns, name, script)
	ctr := &p.Spec.Containers[0]
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
	}}}
	if block {
		ctr.VolumeMounts = nil
		ctr.VolumeDevices = []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/block"}}
	} else {
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	return p
}

// setupDriver returns the cluster, skipping the test when dirvol is not
// deployed on the real node.
func setupDriver(t *testing.T) *framework.Env {
	t.Helper()
	e := setup(t)
	if e.Local == nil || e.Local.Real == nil || e.Local.Real.DriverPod == "" {
		t.Skip("dirvol is not deployed on the real node")
	}
	return e
}

// exec runs a shell script in the pod's container and returns its output,
// failing the test on an error.
func exec(t *testing.T, e *framework.Env, ns, pod, script string) string {
	t.Helper()
	out, stderr, err := e.Exec(context.Background(), ns, pod, "app", []string{"sh", "-c", script}, nil)
	if err != nil {
		t.Fatalf("%v (stdout %q, stderr %q)", err, out, stderr)
	}
	return out
}

// deletePod deletes a pod and waits until the kubelet has finished it
// (volumes unpublished) and its directory is gone.
func deletePod(t *testing.T, e *framework.Env, pod *corev1.Pod) {
	t.Helper()
	one := int64(1)
	err := e.Kube.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &one})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitPodGone(t, e, pod.Namespace, pod.Name)
	e.Poll(t, "pod directory of "+pod.Name+" removed", func(context.Context) (bool, error) {
		_, err := os.Stat(podDir(pod.UID))
		return os.IsNotExist(err), nil
	})
	mounts, err := hoststate.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if strings.HasPrefix(m, podDir(pod.UID)) {
			t.Errorf("mount %s left after pod %s is gone", m, pod.Name)
		}
	}
}

// volumeDir is the volume's directory on this host: dirvol's data dir (the
// DaemonSet's hostPath) and the volume's place in its pool.
func volumeDir(t *testing.T, e *framework.Env, pv *corev1.PersistentVolume) string {
	t.Helper()
	if pool := pv.Spec.CSI.VolumeAttributes["pool"]; pool != "" && pool != "default" {
		t.Fatalf("volume %s is in pool %q: its directory is not under the data dir", pv.Name, pool)
	}
	return filepath.Join(framework.RealNodeDataDir, framework.VolumeDir(pv))
}

// TestVolumeOutlivesPod: a pod writes to a dirvol claim (the kubelet
// mounts it through the driver's pod), is deleted (the volume is
// unpublished: no mount left), and a new pod reads the same data; the
// file is in the volume's directory on the node.
func TestVolumeOutlivesPod(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol", "64Mi"))
	e.CreatePod(t, claimPod(ns, "writer", "data", false, "echo written-by-writer > /data/file"))
	writer := waitRunning(t, e, ns, "writer")
	_, pv := e.WaitBound(t, ns, "data")
	if b, err := os.ReadFile(filepath.Join(volumeDir(t, e, pv), "file")); err != nil || string(b) != "written-by-writer\n" {
		t.Errorf("file in the volume's directory on the node: %q, %v", b, err)
	}
	deletePod(t, e, writer)

	e.CreatePod(t, claimPod(ns, "reader", "data", false, "true"))
	waitRunning(t, e, ns, "reader")
	if out := exec(t, e, ns, "reader", "cat /data/file"); out != "written-by-writer\n" {
		t.Errorf("the second pod reads %q, want what the first wrote", out)
	}
}

// TestReclaimOnRealNode: a file written by a pod into a claim of each
// reclaim class; after the pod and the claim are deleted, the volume's
// directory is gone (dirvol), kept with the file (dirvol-retain), or moved
// to archive/ with the file (dirvol-archive).
func TestReclaimOnRealNode(t *testing.T) {
	e := setupDriver(t)
	for _, tc := range []struct {
		class             string
		kept, archived    bool
		wantPVPhaseOrGone corev1.PersistentVolumePhase // "" = PV deleted
	}{
		{class: "dirvol"},
		{class: "dirvol-retain", kept: true, wantPVPhaseOrGone: corev1.VolumeReleased},
		{class: "dirvol-archive", archived: true},
	} {
		t.Run(tc.class, func(t *testing.T) {
			ctx := context.Background()
			ns := e.NewNamespace(t)
			e.CreatePVC(t, framework.PVC(ns, "data", tc.class, "32Mi"))
			e.CreatePod(t, claimPod(ns, "writer", "data", false, "echo "+tc.class+" > /data/file"))
			writer := waitRunning(t, e, ns, "writer")
			_, pv := e.WaitBound(t, ns, "data")
			dir := volumeDir(t, e, pv)
			deletePod(t, e, writer)
			e.DeletePVC(t, ns, "data")
			if tc.wantPVPhaseOrGone == "" {
				e.WaitPVGone(t, pv.Name)
			} else {
				e.WaitPVPhase(t, pv.Name, tc.wantPVPhaseOrGone)
			}
			b, err := os.ReadFile(filepath.Join(dir, "file"))
			switch {
			case tc.kept && (err != nil || string(b) != tc.class+"\n"):
				t.Errorf("retained volume's file: %q, %v; want it kept", b, err)
			case !tc.kept && !os.IsNotExist(err):
				t.Errorf("volume directory %s after reclaim: %v, want it gone", dir, err)
			}
			archive := filepath.Join(framework.RealNodeDataDir, "archive")
			entries, _ := os.ReadDir(archive)
			var found []string
			for _, en := range entries {
				if strings.HasPrefix(en.Name(), ns+"_data_") {
					found = append(found, en.Name())
				}
			}
			if tc.archived {
				if len(found) != 1 {
					t.Fatalf("archive/ entries for %s/data: %v, want one", ns, found)
				}
				if b, err := os.ReadFile(filepath.Join(archive, found[0], "file")); err != nil || string(b) != tc.class+"\n" {
					t.Errorf("archived file: %q, %v", b, err)
				}
			} else if len(found) != 0 {
				t.Errorf("archive/ entries %v for a class that does not archive", found)
			}
			if tc.kept {
				if err := e.Kube.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestBlockVolume: a Block claim is a device in the pod; what one pod
// writes to it, the next reads back. Once the pods and the claim are
// deleted, no loop device is attached to the volume's file.
func TestBlockVolume(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, blockPVC(ns, "dev"))
	e.CreatePod(t, claimPod(ns, "writer", "dev", true, "printf block-data-1 > /dev/block && sync"))
	writer := waitRunning(t, e, ns, "writer")
	if out := exec(t, e, ns, "writer", "test -b /dev/block && echo is-block"); out != "is-block\n" {
		t.Fatalf("/dev/block in the pod: %q, want a block device", out)
	}
	dev, ino := blockFileID(t, e, ns, "dev")
	deletePod(t, e, writer)
	e.CreatePod(t, claimPod(ns, "reader", "dev", true, "true"))
	reader := waitRunning(t, e, ns, "reader")
	if out := exec(t, e, ns, "reader", "head -c 12 /dev/block"); out != "block-data-1" {
		t.Errorf("the second pod reads %q from the device, want what the first wrote", out)
	}
	deletePod(t, e, reader)
	deleteClaimNoDevices(t, e, ns, "dev", dev, ino)
}

// blockPVC is a 16 MiB Block claim of the default class.
func blockPVC(ns, name string) *corev1.PersistentVolumeClaim {
	pvc := framework.PVC(ns, name, "dirvol", "16Mi")
	block := corev1.PersistentVolumeBlock
	pvc.Spec.VolumeMode = &block
	return pvc
}

// blockFileID returns the device and inode numbers of the block file of
// the volume bound to claim, which identify the loop devices attached to
// it whatever path the kernel reports for it.
func blockFileID(t *testing.T, e *framework.Env, ns, claim string) (dev, ino uint64) {
	t.Helper()
	_, pv := e.WaitBound(t, ns, claim)
	dev, ino, err := hoststate.FileID(filepath.Join(volumeDir(t, e, pv), "block.img"))
	if err != nil {
		t.Fatal(err)
	}
	return dev, ino
}

// deleteClaimNoDevices deletes a block claim whose pods are gone, waits for
// its PV to go (DeleteVolume refuses while a loop device is attached to the
// file), and checks that no loop device is attached to the file, which is
// gone.
func deleteClaimNoDevices(t *testing.T, e *framework.Env, ns, claim string, dev, ino uint64) {
	t.Helper()
	_, pv := e.WaitBound(t, ns, claim)
	e.DeletePVC(t, ns, claim)
	e.WaitPVGone(t, pv.Name)
	if left := hoststate.LoopDevicesOn(dev, ino); len(left) > 0 {
		t.Errorf("claim %s/%s deleted, and its file is still attached: %v", ns, claim, left)
	}
}

// restartDriver kills the dirvol container of the driver's pod (SIGKILL)
// and waits until the kubelet has restarted it and it is ready.
func restartDriver(t *testing.T, e *framework.Env) {
	t.Helper()
	ctx := context.Background()
	real := e.Local.Real
	driver, err := e.Kube.CoreV1().Pods(real.DriverNamespace).Get(ctx, real.DriverPod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var restarts int32
	for _, s := range driver.Status.ContainerStatuses {
		if s.Name == "dirvol" {
			id, restarts = s.ContainerID, s.RestartCount
		}
	}
	if id == "" {
		t.Fatalf("no dirvol container in pod %s", driver.Name)
	}
	if err := e.Local.KillContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.Poll(t, "dirvol restarted and ready", func(ctx context.Context) (bool, error) {
		p, err := e.Kube.CoreV1().Pods(real.DriverNamespace).Get(ctx, real.DriverPod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "dirvol" {
				return s.RestartCount > restarts && s.Ready, nil
			}
		}
		return false, nil
	})
}

// TestDriverRestartKeepsMounts: SIGKILL of the dirvol container while a
// pod uses a volume: the kubelet restarts it, the pod keeps reading and
// writing its volume (the mount does not depend on the driver process),
// and deleting the pod afterwards unpublishes the volume through the
// restarted driver.
func TestDriverRestartKeepsMounts(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol", "32Mi"))
	e.CreatePod(t, claimPod(ns, "app", "data", false, "echo before > /data/file"))
	app := waitRunning(t, e, ns, "app")
	restartDriver(t, e)
	if out := exec(t, e, ns, "app", "cat /data/file && echo after >> /data/file && cat /data/file"); out != "before\nbefore\nafter\n" {
		t.Errorf("the pod's volume after the driver's restart: %q", out)
	}
	deletePod(t, e, app)
}

// TestDriverRestartBlockVolume: the loop device of a Block claim was
// attached by a dirvol container that has since been killed; the kernel
// then reports its backing file relative to that container's mount of
// /var/lib/dirvol, which is gone. The pod keeps its device; deleting the
// pod makes the restarted driver detach it, and deleting the claim removes
// the volume with no device left attached to its file.
func TestDriverRestartBlockVolume(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, blockPVC(ns, "dev"))
	e.CreatePod(t, claimPod(ns, "app", "dev", true, "printf before-restart > /dev/block && sync"))
	app := waitRunning(t, e, ns, "app")
	dev, ino := blockFileID(t, e, ns, "dev")
	restartDriver(t, e)
	if out := exec(t, e, ns, "app", "head -c 14 /dev/block"); out != "before-restart" {
		t.Errorf("the pod's device after the driver's restart reads %q", out)
	}
	deletePod(t, e, app)
	deleteClaimNoDevices(t, e, ns, "dev", dev, ino)
}

// TestVolumeStats: kubelet_volume_stats_used_bytes, which the kubelet gets
// from NodeGetVolumeStats, matches what a pod wrote into a claim on the
// btrfs image pool (where a volume's usage is its own).
func TestVolumeStats(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol-btrfs", "64Mi"))
	const written = 20 << 20
	e.CreatePod(t, claimPod(ns, "app", "data", false, "dd if=/dev/urandom of=/data/blob bs=1M count=20 && sync"))
	waitRunning(t, e, ns, "app")
	e.Poll(t, "dd done", func(ctx context.Context) (bool, error) {
		out, _, err := e.Exec(ctx, ns, "app", "app", []string{"sh", "-c", "stat -c %s /data/blob"}, nil)
		return err == nil && strings.TrimSpace(out) == fmt.Sprint(written), nil
	})
	var used float64
	e.Poll(t, "kubelet_volume_stats_used_bytes of the claim near 20 MiB", func(ctx context.Context) (bool, error) {
		b, err := e.Kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", framework.RealNodeName, "proxy", "metrics").DoRaw(ctx)
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "kubelet_volume_stats_used_bytes{") && strings.Contains(line, `namespace="`+ns+`"`) && strings.Contains(line, `persistentvolumeclaim="data"`) {
				if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &used); err != nil {
					return false, err
				}
			}
		}
		return used >= written && used <= written+4<<20, nil
	})
}

// TestQuotaExceededInPod: on the btrfs image pool a claim's size is a
// limit: a pod writing past it gets "Disk quota exceeded".
func TestQuotaExceededInPod(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePVC(t, framework.PVC(ns, "data", "dirvol-btrfs", "16Mi"))
	e.CreatePod(t, claimPod(ns, "app", "data", false, "true"))
	waitRunning(t, e, ns, "app")
	out, stderr, err := e.Exec(context.Background(), ns, "app", "app", []string{"sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=64 && sync"}, nil)
	if err == nil {
		t.Fatalf("writing 64 MiB into a 16 MiB claim succeeded (stdout %q, stderr %q)", out, stderr)
	}
	if !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("writing past the claim's size: %v, stderr %q; want Disk quota exceeded", err, stderr)
	}
}
