package volume

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

// claimRequest is a create as external-provisioner sends it with
// --extra-create-metadata: the CSI name is the PV name.
func claimRequest(ns, claim, pv string, onDelete OnDelete) CreateRequest {
	req := request(pv)
	req.OnDelete = onDelete
	req.PVCNamespace, req.PVCName, req.PVName = ns, claim, pv
	return req
}

// view maps each entry of the pool's claim view (relative to by-pvc) to
// its link target, without following anything.
func (e *env) view(t *testing.T, poolName string) map[string]string {
	t.Helper()
	top := filepath.Join(e.dirs[poolName].Root(), pool.ViewDir)
	out := map[string]string{}
	err := filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) && p == top {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = target
		case !d.IsDir():
			out[rel] = "file"
		case rel != "." && d.IsDir():
			if names := entries(t, p); len(names) == 0 {
				out[rel] = "empty directory"
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantView is the view the catalog calls for when every ready volume's PV
// name is its entry's name.
func wantView(vols ...Volume) map[string]string {
	out := map[string]string{}
	for _, v := range vols {
		out[filepath.Join(v.PVCNamespace, v.PVCName, v.PVName)] = "../../../volumes/" + v.ID
	}
	return out
}

func sameView(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: view = %v, want %v", what, got, want)
	}
}

// The entry is made with the volume, leads to its data, and goes when the
// volume is deleted, retained or archived, touching nothing else; a claim
// recreated under the same name while its old volume is kept has its own
// entry beside the old one throughout.
func TestViewFollowsVolumes(t *testing.T) {
	for _, onDelete := range []OnDelete{OnDeleteDelete, OnDeleteRetain, OnDeleteArchive} {
		t.Run(string(onDelete), func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			old := mustCreate(t, m, claimRequest("ns", "data", "pvc-old", onDelete))
			other := mustCreate(t, m, claimRequest("other", "data", "pvc-other", OnDeleteDelete))
			mustCreate(t, m, request("no-claim")) // no entry
			// The claim is deleted and made again while the old PV is kept.
			cur := mustCreate(t, m, claimRequest("ns", "data", "pvc-new", OnDeleteDelete))
			sameView(t, "after create", e.view(t, "default"), wantView(old, other, cur))
			writeFile(t, filepath.Join(e.volPath("default", old.ID), "f"), "old")
			writeFile(t, filepath.Join(e.volPath("default", cur.ID), "f"), "new")
			for entry, want := range map[string]string{"pvc-old": "old", "pvc-new": "new"} {
				b, err := os.ReadFile(filepath.Join(e.dirs["default"].Root(), "by-pvc/ns/data", entry, "f"))
				if err != nil || string(b) != want {
					t.Errorf("through by-pvc/ns/data/%s: %q, %v; want %q", entry, b, err, want)
				}
			}

			// Deleting the old volume changes its own directory, its entry
			// and, for archive, the archive; nothing else.
			root := e.dirs["default"].Root()
			own := []string{
				rel(t, e.root, e.volPath("default", old.ID)),
				rel(t, e.root, filepath.Join(root, "by-pvc/ns/data/pvc-old")),
				rel(t, e.root, filepath.Join(root, "archive")),
				"catalog",
			}
			before := without(tree(t, e.root), own...)
			if err := m.Delete(context.Background(), old.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			sameTree(t, "node", before, without(tree(t, e.root), own...))
			sameView(t, "after delete", e.view(t, "default"), wantView(other, cur))
			switch onDelete {
			case OnDeleteRetain:
				if !exists(t, filepath.Join(e.volPath("default", old.ID), "f")) {
					t.Error("retained data gone")
				}
			case OnDeleteArchive:
				if got := entries(t, filepath.Join(root, "archive")); !reflect.DeepEqual(got, []string{"ns_data_pvc-old_" + fixedStamp}) {
					t.Errorf("archive holds %v", got)
				}
			}

			// A restart finds the view in step and changes nothing.
			before = tree(t, root)
			e.recovered(t)
			sameTree(t, "pool after restart", before, tree(t, root))

			for _, v := range []Volume{other, cur} {
				if err := m.Delete(context.Background(), v.ID); err != nil {
					t.Fatal(err)
				}
			}
			if exists(t, filepath.Join(root, "by-pvc", "ns")) || exists(t, filepath.Join(root, "by-pvc", "other")) {
				t.Errorf("emptied namespace directories left: %v", e.view(t, "default"))
			}
		})
	}
}

func rel(t *testing.T, base, p string) string {
	t.Helper()
	r, err := filepath.Rel(base, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Two volumes with the same claim and PV name (possible only outside
// Kubernetes) never share an entry, at create and after a restart.
func TestViewSamePVName(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	a := mustCreate(t, m, claimRequest("ns", "data", "pv", OnDeleteDelete))
	req := claimRequest("ns", "data", "pv", OnDeleteDelete)
	req.Name = "another-name"
	b := mustCreate(t, m, req)
	want := map[string]string{
		"ns/data/pv":      "../../../volumes/" + a.ID,
		"ns/data/" + b.ID: "../../../volumes/" + b.ID,
	}
	sameView(t, "after create", e.view(t, "default"), want)
	e.recovered(t)
	sameView(t, "after restart", e.view(t, "default"), want)
}

// Recovery makes the view match the catalog whatever a crash (or an
// operator) left: interrupted creates and deletes lose their entries, ready
// volumes get theirs back, stale and misplaced links go, planted links are
// removed without being followed, and files nobody but an operator made
// stay.
func TestViewRepairedAtStart(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	kept := mustCreate(t, m, claimRequest("ns", "kept", "pv-kept", OnDeleteDelete))
	lost := mustCreate(t, m, claimRequest("ns", "lost", "pv-lost", OnDeleteDelete))
	root := e.dirs["default"].Root()
	view := filepath.Join(root, "by-pvc")

	// A create interrupted after its entry was made, and a delete
	// interrupted before its entry was removed.
	creating := record(id(101), "pv-creating", "default", catalog.StateCreating, OnDeleteDelete)
	creating.PVCNamespace, creating.PVCName = "ns", "creating"
	deleting := record(id(102), "pv-deleting", "default", catalog.StateDeleting, OnDeleteDelete)
	deleting.PVCNamespace, deleting.PVCName = "ns", "deleting"
	e.craft(t, creating, deleting)
	for _, v := range []Volume{creating, deleting} {
		writeFile(t, filepath.Join(e.volPath("default", v.ID), "f"), "x")
		symlink(t, "../../../volumes/"+v.ID, filepath.Join(view, "ns", v.PVCName, v.PVName))
	}
	// lost's entry vanished; one points at a volume nobody has; one
	// points at kept from the wrong claim; a second entry for kept; a link
	// planted in place of a namespace; an operator's file.
	if err := os.Remove(filepath.Join(view, "ns/lost/pv-lost")); err != nil {
		t.Fatal(err)
	}
	symlink(t, "../../../volumes/"+id(999), filepath.Join(view, "gone/claim/pv"))
	symlink(t, "../../../volumes/"+kept.ID, filepath.Join(view, "ns/wrong/pv-kept"))
	symlink(t, "../../../volumes/"+kept.ID, filepath.Join(view, "ns/kept", kept.ID))
	// An entry named after the ID of a volume whose PV name sorts after it
	// ("x" > "vol-..."): the one named after the PV is kept.
	late := mustCreate(t, m, claimRequest("ns", "late", "x", OnDeleteDelete))
	symlink(t, "../../../volumes/"+late.ID, filepath.Join(view, "ns/late", late.ID))
	symlink(t, e.outside, filepath.Join(view, "planted"))
	writeFile(t, filepath.Join(view, "ns/kept/README"), "an operator's note")
	// A stop between an entry's removal and its directories'.
	if err := os.MkdirAll(filepath.Join(view, "emptied/claim"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := tree(t, e.outside)

	m = e.recovered(t)
	want := wantView(kept, lost, late)
	want["ns/kept/README"] = "file"
	sameView(t, "after recovery", e.view(t, "default"), want)
	sameTree(t, "outside", outside, tree(t, e.outside))
	if n := len(m.List()); n != 3 {
		t.Errorf("%d volumes listed, want 3", n)
	}
}

// A view that cannot be made (a file where the view's directory goes)
// never fails a create or a delete: the view is for reading.
func TestViewBlockedDoesNotFailVolumes(t *testing.T) {
	e := newEnv(t)
	root := e.dirs["default"].Root()
	writeFile(t, filepath.Join(root, "by-pvc"), "in the way")
	m := e.recovered(t)
	v := mustCreate(t, m, claimRequest("ns", "data", "pv", OnDeleteDelete))
	if !exists(t, e.volPath("default", v.ID)) {
		t.Fatal("volume not made")
	}
	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "by-pvc")); err != nil || !strings.Contains(string(b), "in the way") {
		t.Errorf("the file in the view's place was touched: %q, %v", b, err)
	}
}
