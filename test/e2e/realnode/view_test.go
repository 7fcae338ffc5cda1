package realnode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// TestClaimViewOnRealNode: a file a pod writes into a claim is readable on
// the node at <pool>/by-pvc/<namespace>/<claim>/<pv> (README "Finding a
// claim's data"), a link to the volume's directory. With the archive class,
// deleting the claim removes the entry and the archive holds the data.
// With the retain class (reclaimPolicy Retain: DeleteVolume is never
// called) the released volume keeps its entry and its data, and a claim
// made again under the same name gets its own entry beside it.
func TestClaimViewOnRealNode(t *testing.T) {
	e := setupDriver(t)
	t.Run("dirvol-archive", func(t *testing.T) {
		ns := e.NewNamespace(t)
		pv, entry := writeThroughClaim(t, e, ns, "dirvol-archive", "archived-data")
		dir := volumeDir(t, e, pv)
		e.DeletePVC(t, ns, "data")
		e.WaitPVGone(t, pv.Name)
		if _, err := os.Lstat(entry); !os.IsNotExist(err) {
			t.Errorf("view entry %s after the claim was archived: %v, want it gone", entry, err)
		}
		archived := archiveOf(t, ns, "data")
		if b, err := os.ReadFile(filepath.Join(archived, "file")); err != nil || string(b) != "archived-data\n" {
			t.Errorf("archived file in %s: %q, %v", archived, b, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("volume directory %s after archiving: %v, want it gone", dir, err)
		}
	})
	t.Run("dirvol-retain", func(t *testing.T) {
		ctx := context.Background()
		ns := e.NewNamespace(t)
		old, oldEntry := writeThroughClaim(t, e, ns, "dirvol-retain", "first-claim")
		e.DeletePVC(t, ns, "data")
		e.WaitPVPhase(t, old.Name, corev1.VolumeReleased)
		if b, err := os.ReadFile(filepath.Join(oldEntry, "file")); err != nil || string(b) != "first-claim\n" {
			t.Errorf("released volume's file through %s: %q, %v; want it kept", oldEntry, b, err)
		}
		// The same claim name again: a new volume, its own entry.
		pv, entry := writeThroughClaim(t, e, ns, "dirvol-retain", "second-claim")
		if pv.Name == old.Name || entry == oldEntry {
			t.Fatalf("the claim made again is bound to %s, the released PV", pv.Name)
		}
		if b, err := os.ReadFile(filepath.Join(oldEntry, "file")); err != nil || string(b) != "first-claim\n" {
			t.Errorf("released volume's file through %s once the claim is made again: %q, %v", oldEntry, b, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(entry))
		if len(entries) != 2 {
			t.Errorf("entries of %s: %d, want the released volume's and the new one's", filepath.Dir(entry), len(entries))
		}
		e.DeletePVC(t, ns, "data")
		e.WaitPVPhase(t, pv.Name, corev1.VolumeReleased)
		for _, name := range []string{old.Name, pv.Name} {
			if err := e.Kube.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}
	})
}

// writeThroughClaim makes claim "data" of class in ns, has a pod write
// content into its file and go, and checks that the file is readable on
// the node through the claim's view entry, which it returns with the PV.
func writeThroughClaim(t *testing.T, e *framework.Env, ns, class, content string) (*corev1.PersistentVolume, string) {
	t.Helper()
	e.CreatePVC(t, framework.PVC(ns, "data", class, "32Mi"))
	e.CreatePod(t, claimPod(ns, "writer", "data", false, "echo "+content+" > /data/file"))
	writer := waitRunning(t, e, ns, "writer")
	_, pv := e.WaitBound(t, ns, "data")
	entry := filepath.Join(framework.RealNodeDataDir, "by-pvc", ns, "data", pv.Name)
	link, err := os.Readlink(entry)
	if want := "../../../" + framework.VolumeDir(pv); err != nil || link != want {
		t.Errorf("readlink %s = %q, %v; want %q", entry, link, err, want)
	}
	if b, err := os.ReadFile(filepath.Join(entry, "file")); err != nil || string(b) != content+"\n" {
		t.Errorf("the pod's file through %s: %q, %v", entry, b, err)
	}
	deletePod(t, e, writer)
	return pv, entry
}

// archiveOf returns the one archive of claim ns/name in the default pool:
// archive/<namespace>_<claim>_<pv>_<UTC time>.
func archiveOf(t *testing.T, ns, name string) string {
	t.Helper()
	archive := filepath.Join(framework.RealNodeDataDir, "archive")
	entries, _ := os.ReadDir(archive)
	var found []string
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ns+"_"+name+"_") {
			found = append(found, en.Name())
		}
	}
	if len(found) != 1 {
		t.Fatalf("archive/ entries for %s/%s: %v, want one", ns, name, found)
	}
	return filepath.Join(archive, found[0])
}
