package realnode

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// inlinePod is a busybox pod on the real node with an inline dirvol volume
// (CSI ephemeral) at /data, made with attrs as its volumeAttributes.
func inlinePod(ns, name string, attrs map[string]string, script string) *corev1.Pod {
	p := busyboxPod(ns, name, script)
	driver := framework.DriverName
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "inline", VolumeSource: corev1.VolumeSource{
		CSI: &corev1.CSIVolumeSource{Driver: driver, VolumeAttributes: attrs},
	}})
	ctr := &p.Spec.Containers[0]
	ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: "inline", MountPath: "/data"})
	return p
}

// inlineRecord is the part of a catalog record the tests read.
type inlineRecord struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Pool          string            `json:"pool"`
	CapacityBytes int64             `json:"capacityBytes"`
	Parameters    map[string]string `json:"parameters"`
}

// inlineRecordOf returns the catalog record of the inline volume volName
// of the pod: the kubelet names the volume csi-<sha256 of pod UID and
// volume name>, and dirvol records it under that name. ok is false when
// there is none.
func inlineRecordOf(t *testing.T, pod *corev1.Pod, volName string) (inlineRecord, bool) {
	t.Helper()
	handle := fmt.Sprintf("csi-%x", sha256.Sum256([]byte(string(pod.UID)+volName)))
	dir := filepath.Join(framework.RealNodeDataDir, "catalog", "volumes")
	files, err := filepath.Glob(filepath.Join(dir, "vol-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // deleted meanwhile
		}
		var r inlineRecord
		if err := json.Unmarshal([]byte(strings.TrimRight(string(b), " \x00\n")), &r); err != nil {
			t.Fatalf("catalog record %s: %v", f, err)
		}
		if r.Name == handle {
			return r, true
		}
	}
	return inlineRecord{}, false
}

// TestInlineVolume: a pod with an inline dirvol volume (volumeAttributes
// size) writes into it; while the pod runs the volume is recorded with its
// size and the file is in its directory on the node; once the pod is
// deleted, the directory and the record are gone.
func TestInlineVolume(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePod(t, inlinePod(ns, "app", map[string]string{"size": "32Mi"}, "echo inline-data > /data/file"))
	app := waitRunning(t, e, ns, "app")
	rec, ok := inlineRecordOf(t, app, "inline")
	if !ok {
		t.Fatalf("no catalog record of pod %s's inline volume while it runs", app.Name)
	}
	if rec.Pool != "default" || rec.CapacityBytes != 32<<20 || rec.Parameters["csi.storage.k8s.io/ephemeral"] != "true" {
		t.Errorf("inline volume's record: %+v; want pool default, 32 MiB, marked ephemeral", rec)
	}
	dir := filepath.Join(framework.RealNodeDataDir, "volumes", rec.ID)
	if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(b) != "inline-data\n" {
		t.Errorf("the pod's file in %s: %q, %v", dir, b, err)
	}
	deletePod(t, e, app)
	if _, ok := inlineRecordOf(t, app, "inline"); ok {
		t.Errorf("inline volume %s still recorded after its pod is gone", rec.ID)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("inline volume directory %s after its pod is gone: %v, want it gone", dir, err)
	}
}

// TestInlineVolumeSizeEnforced: an inline volume on the btrfs image pool
// (pool: btrfs, as deploy/'s image-pool overlay configures every node) has
// its size enforced: a write past it fails in the pod with "Disk quota
// exceeded". The volume goes with the pod.
func TestInlineVolumeSizeEnforced(t *testing.T) {
	e := setupDriver(t)
	ns := e.NewNamespace(t)
	e.CreatePod(t, inlinePod(ns, "app", map[string]string{"size": "16Mi", "pool": "btrfs"}, "true"))
	app := waitRunning(t, e, ns, "app")
	rec, ok := inlineRecordOf(t, app, "inline")
	if !ok || rec.Pool != "btrfs" || rec.CapacityBytes != 16<<20 {
		t.Fatalf("inline volume's record: %+v, %t; want one in pool btrfs of 16 MiB", rec, ok)
	}
	out, stderr, err := e.Exec(context.Background(), ns, "app", "app", []string{"sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=64 && sync"}, nil)
	if err == nil {
		t.Fatalf("writing 64 MiB into a 16 MiB inline volume succeeded (stdout %q, stderr %q)", out, stderr)
	}
	if !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("writing past the inline volume's size: %v, stderr %q; want Disk quota exceeded", err, stderr)
	}
	deletePod(t, e, app)
	if _, ok := inlineRecordOf(t, app, "inline"); ok {
		t.Errorf("inline volume %s still recorded after its pod is gone", rec.ID)
	}
}
