package hostile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

const (
	keyNamespace = "csi.storage.k8s.io/pvc/namespace"
	keyClaim     = "csi.storage.k8s.io/pvc/name"
	keyPV        = "csi.storage.k8s.io/pv/name"
)

// claimParams is what external-provisioner adds with --extra-create-metadata.
func claimParams(ns, claim, pv string) map[string]string {
	return map[string]string{keyNamespace: ns, keyClaim: claim, keyPV: pv}
}

// TestClaimViewNames sends claim metadata that must never become a path in
// the claim view (by-pvc/<namespace>/<claim>/<pv>): each is refused, naming
// the parameter, and nothing on disk changes.
func TestClaimViewNames(t *testing.T) {
	e := start(t)
	for _, key := range []string{keyNamespace, keyClaim, keyPV} {
		for _, tc := range []struct{ name, value string }{
			{"dotdot", ".."},
			{"dot", "."},
			{"traversal", "../../outside"},
			{"slash", "a/b"},
			{"absolute", "/etc"},
			{"nul", "a\x00b"},
			{"newline", "a\nb"},
			{"non-ASCII", "名前"},
			{"combining accent", "cafe\u0301"},
			{"upper case", "Data"},
			{"leading dash", "-x"},
			{"empty", ""},
			{"256 bytes", strings.Repeat("a", 256)},
			{"2KB", long},
		} {
			t.Run(key+"/"+tc.name, func(t *testing.T) {
				params := claimParams("ns", "claim", "pv-1")
				params[key] = tc.value
				before := e.snap(t)
				_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "view", VolumeCapabilities: rwCaps(), Parameters: params})
				wantStatus(t, err, codes.InvalidArgument, `"`+key+`"`)
				e.unchanged(t, before)
			})
		}
	}
	// Kubernetes allows a 63-byte namespace, but not 64.
	params := claimParams(strings.Repeat("n", 64), "claim", "pv-1")
	before := e.snap(t)
	_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "view", VolumeCapabilities: rwCaps(), Parameters: params})
	wantStatus(t, err, codes.InvalidArgument, `"`+keyNamespace+`"`)
	e.unchanged(t, before)
}

// TestClaimViewRecreatedClaim makes a claim, keeps its volume, makes the
// claim again under the same name, and deletes the old volume with each
// reclaim policy: the two always have distinct entries, each leading to its
// own data, and the old one's entry goes with it.
func TestClaimViewRecreatedClaim(t *testing.T) {
	e := start(t)
	for _, policy := range []string{"retain", "archive", "delete"} {
		t.Run(policy, func(t *testing.T) {
			ns := "ns-" + policy
			oldParams := claimParams(ns, "data", "pvc-old-"+policy)
			oldParams["onDelete"] = policy
			oldID, oldDir := e.create(t, "pvc-old-"+policy, oldParams)
			newID, newDir := e.create(t, "pvc-new-"+policy, claimParams(ns, "data", "pvc-new-"+policy))
			writeFile(t, filepath.Join(oldDir, "who"), oldID)
			writeFile(t, filepath.Join(newDir, "who"), newID)
			claimDir := filepath.Join(e.data, "by-pvc", ns, "data")
			for entry, id := range map[string]string{"pvc-old-" + policy: oldID, "pvc-new-" + policy: newID} {
				b, err := os.ReadFile(filepath.Join(claimDir, entry, "who"))
				if err != nil || string(b) != id {
					t.Errorf("by-pvc/%s/data/%s leads to %q (%v), want volume %s", ns, entry, b, err, id)
				}
			}
			_, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: oldID})
			wantStatus(t, err, codes.OK)
			names, err := os.ReadDir(claimDir)
			if err != nil || len(names) != 1 || names[0].Name() != "pvc-new-"+policy {
				t.Errorf("claim directory after the old volume's delete holds %v (%v), want only pvc-new-%s", names, err, policy)
			}
			if policy == "retain" {
				if b, err := os.ReadFile(filepath.Join(oldDir, "who")); err != nil || string(b) != oldID {
					t.Errorf("retained data: %q, %v", b, err)
				}
			}
			_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: newID})
			wantStatus(t, err, codes.OK)
			if _, err := os.Lstat(filepath.Join(e.data, "by-pvc", ns)); !os.IsNotExist(err) {
				t.Errorf("namespace directory left in the view after its last volume went: %v", err)
			}
		})
	}
}

// TestClaimViewPlantedLinks plants links to the sentinel tree in place of
// the view's directories: creates and deletes still work, nothing is made
// or removed through the links (the sentinel is checked when the test
// ends), and the planted links are left for the next start to repair.
func TestClaimViewPlantedLinks(t *testing.T) {
	e := start(t)
	view := filepath.Join(e.data, "by-pvc")
	must(t, os.MkdirAll(filepath.Join(view, "ns"), 0o700))
	must(t, os.Symlink(e.outside, filepath.Join(view, "planted")))
	must(t, os.Symlink(filepath.Join(e.outside, "home"), filepath.Join(view, "ns", "claim")))
	outside := snapshot(t, e.outside)
	outsideUnchanged := func(when string) {
		t.Helper()
		if diff := outside.diff(snapshot(t, e.outside)); len(diff) > 0 {
			t.Errorf("%s, the tree outside the data dir changed:\n%s", when, strings.Join(diff, "\n"))
		}
	}
	for i, params := range []map[string]string{
		claimParams("planted", "home", "user"),
		claimParams("ns", "claim", "user"),
	} {
		before := e.snap(t)
		id, dir := e.create(t, "planted-"+string(rune('a'+i)), params)
		writeFile(t, filepath.Join(dir, "data.txt"), "volume data")
		outsideUnchanged("after CreateVolume")
		_, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		wantStatus(t, err, codes.OK)
		outsideUnchanged("after DeleteVolume")
		e.unchanged(t, before, filepath.Join(e.data, "catalog"))
	}
}
