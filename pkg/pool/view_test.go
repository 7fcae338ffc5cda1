package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/disktree"
)

const (
	viewID1 = "vol-00000000000000000000000000000001"
	viewID2 = "vol-00000000000000000000000000000002"
)

// viewPool is a dir pool with two volumes, next to a directory outside it
// that nothing may touch.
func viewPool(t *testing.T) (d *Dir, outside string) {
	t.Helper()
	base := t.TempDir()
	d, err := NewDir("default", filepath.Join(base, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{viewID1, viewID2} {
		if err := d.Create(id, VolumeSpec{Perm: Permissions{Mode: 0o755, UID: -1, GID: -1}}); err != nil {
			t.Fatal(err)
		}
		p, _ := d.Path(id)
		if err := os.WriteFile(filepath.Join(p, "who"), []byte(id), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside = filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "file"), []byte("not the pool's"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d, outside
}

func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	d, err := disktree.Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func unchanged(t *testing.T, what string, before map[string]string, root string) {
	t.Helper()
	if diff := disktree.Diff(before, describe(t, root)); len(diff) != 0 {
		t.Errorf("%s changed:\n%s", what, strings.Join(diff, "\n"))
	}
}

// readVia reads the file "who" through the view entry at rel, as an operator
// would, and returns which volume it came from.
func readVia(t *testing.T, d *Dir, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Root(), rel, "who"))
	if err != nil {
		t.Fatalf("read through the view: %v", err)
	}
	return string(b)
}

func TestViewLinkUnlink(t *testing.T) {
	d, _ := viewPool(t)
	v := NewView(d.Root())
	c := Claim{Namespace: "ns", Name: "claim", PV: "pvc-1"}
	p, err := v.Link(viewID1, c)
	if err != nil {
		t.Fatalf("Link: %v", err)
	}
	if want := filepath.Join(d.Root(), "by-pvc/ns/claim/pvc-1"); p != want {
		t.Errorf("Link = %s, want %s", p, want)
	}
	if got := readVia(t, d, "by-pvc/ns/claim/pvc-1"); got != viewID1 {
		t.Errorf("entry leads to %s, want %s", got, viewID1)
	}
	// Relative, so that it leads to the volume wherever the pool is seen
	// from (a host path, a container's mount).
	if target, _ := os.Readlink(p); target != "../../../volumes/"+viewID1 {
		t.Errorf("link target %q is not relative to the pool", target)
	}
	before := describe(t, d.Root())
	if p2, err := v.Link(viewID1, c); err != nil || p2 != p {
		t.Errorf("second Link = %s, %v; want %s, nil", p2, err, p)
	}
	unchanged(t, "pool after a repeated Link", before, d.Root())

	got, err := v.Entries()
	want := []ViewEntry{{Namespace: "ns", Claim: "claim", Name: "pvc-1", Link: true, VolumeID: viewID1}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Entries = %+v, %v; want %+v", got, err, want)
	}

	if err := v.Unlink(viewID1, c); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d.Root(), "by-pvc/ns")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty namespace directory left behind: %v", err)
	}
	if got := readVia(t, d, "volumes/"+viewID1); got != viewID1 {
		t.Error("Unlink touched the volume")
	}
	if err := v.Unlink(viewID1, c); err != nil {
		t.Errorf("second Unlink: %v", err)
	}
}

// A claim recreated under the same name while the old volume is kept (a
// PersistentVolume with reclaim policy Retain) gets its own entry beside the
// old one; outside Kubernetes even a repeated PV name cannot make two
// volumes share one.
func TestViewDistinctEntries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c1, c2   Claim
		e1, e2   string
		sameDirs bool
	}{
		{name: "claim recreated", c1: Claim{"ns", "data", "pvc-old"}, c2: Claim{"ns", "data", "pvc-new"},
			e1: "by-pvc/ns/data/pvc-old", e2: "by-pvc/ns/data/pvc-new"},
		{name: "same PV name", c1: Claim{"ns", "data", "pv"}, c2: Claim{"ns", "data", "pv"},
			e1: "by-pvc/ns/data/pv", e2: "by-pvc/ns/data/" + viewID2},
		{name: "no PV name", c1: Claim{"ns", "data", ""}, c2: Claim{"ns", "data", ""},
			e1: "by-pvc/ns/data/" + viewID1, e2: "by-pvc/ns/data/" + viewID2},
		{name: "PV name is the other volume's ID", c1: Claim{"ns", "data", ""}, c2: Claim{"ns", "data", viewID1},
			e1: "by-pvc/ns/data/" + viewID1, e2: "by-pvc/ns/data/" + viewID2},
		{name: "other namespace", c1: Claim{"a", "data", "pv"}, c2: Claim{"b", "data", "pv"},
			e1: "by-pvc/a/data/pv", e2: "by-pvc/b/data/pv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := viewPool(t)
			v := NewView(d.Root())
			for _, l := range []struct {
				id, entry string
				c         Claim
			}{{viewID1, tc.e1, tc.c1}, {viewID2, tc.e2, tc.c2}} {
				p, err := v.Link(l.id, l.c)
				if err != nil || p != filepath.Join(d.Root(), l.entry) {
					t.Fatalf("Link(%s) = %s, %v; want %s", l.id, p, err, l.entry)
				}
			}
			for id, entry := range map[string]string{viewID1: tc.e1, viewID2: tc.e2} {
				if got := readVia(t, d, entry); got != id {
					t.Errorf("%s leads to %s, want %s", entry, got, id)
				}
			}
			// Removing one leaves the other.
			if err := v.Unlink(viewID1, tc.c1); err != nil {
				t.Fatal(err)
			}
			if got := readVia(t, d, tc.e2); got != viewID2 {
				t.Errorf("after the other's Unlink, %s leads to %s", tc.e2, got)
			}
			if _, err := os.Lstat(filepath.Join(d.Root(), tc.e1)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still there: %v", tc.e1, err)
			}
		})
	}
}

// Names that are not one ordinary path element are refused before anything
// is made. (The controller refuses anything that is not a Kubernetes name,
// unicode included, long before; this is the pool's own line.)
func TestViewRefusesNames(t *testing.T) {
	long := strings.Repeat("n", 256)
	for _, tc := range []struct {
		name string
		id   string
		c    Claim
	}{
		{"namespace dotdot", viewID1, Claim{"..", "c", "pv"}},
		{"namespace dot", viewID1, Claim{".", "c", "pv"}},
		{"claim traversal", viewID1, Claim{"ns", "../../volumes", "pv"}},
		{"claim slash", viewID1, Claim{"ns", "a/b", "pv"}},
		{"claim absolute", viewID1, Claim{"ns", "/etc", "pv"}},
		{"pv dotdot", viewID1, Claim{"ns", "c", ".."}},
		{"pv slash", viewID1, Claim{"ns", "c", "x/../../../../outside"}},
		{"nul", viewID1, Claim{"ns", "c\x00d", "pv"}},
		{"overlong namespace", viewID1, Claim{long, "c", "pv"}},
		{"overlong pv", viewID1, Claim{"ns", "c", long}},
		{"empty namespace", viewID1, Claim{"", "c", "pv"}},
		{"empty claim", viewID1, Claim{"ns", "", "pv"}},
		{"id traversal", "../outside", Claim{"ns", "c", "pv"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := viewPool(t)
			base := filepath.Dir(d.Root()) // the pool and the directory outside it
			before := describe(t, base)
			v := NewView(d.Root())
			if _, err := v.Link(tc.id, tc.c); !errors.Is(err, ErrInvalidName) {
				t.Errorf("Link = %v, want ErrInvalidName", err)
			}
			if err := v.Unlink(tc.id, tc.c); !errors.Is(err, ErrInvalidName) {
				t.Errorf("Unlink = %v, want ErrInvalidName", err)
			}
			unchanged(t, "pool and its surroundings", before, base)
		})
	}
}

// A link planted in place of a directory of the view is never followed:
// nothing is made or removed outside the pool through it.
func TestViewPlantedLinks(t *testing.T) {
	c := Claim{Namespace: "ns", Name: "claim", PV: "pv"}
	for _, tc := range []struct {
		name, at string
	}{
		{"view directory", "by-pvc"},
		{"namespace", "by-pvc/ns"},
		{"claim", "by-pvc/ns/claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, outside := viewPool(t)
			if err := os.MkdirAll(filepath.Dir(filepath.Join(d.Root(), tc.at)), 0o755); err != nil {
				t.Fatal(err)
			}
			// outside/pv links back to volume 1, so that an Unlink that
			// followed the planted link would find "its" entry there.
			if err := os.Symlink(filepath.Join(d.Root(), "volumes", viewID1), filepath.Join(outside, "pv")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(d.Root(), tc.at)); err != nil {
				t.Fatal(err)
			}
			before := describe(t, outside)
			v := NewView(d.Root())
			if _, err := v.Link(viewID1, c); !errors.Is(err, ErrViewBlocked) {
				t.Errorf("Link = %v, want ErrViewBlocked", err)
			}
			if err := v.Unlink(viewID1, c); err != nil {
				t.Errorf("Unlink = %v, want nil (nothing of the view's own to remove)", err)
			}
			unchanged(t, "directory outside the pool", before, outside)
			// Repair removes the planted link itself (a link: no data is
			// lost) and the view works again.
			entries, err := v.Entries()
			if err != nil && tc.at != "by-pvc" {
				t.Fatalf("Entries: %v", err)
			}
			for _, e := range entries {
				if !e.Link {
					t.Errorf("entry %+v is not a link", e)
				}
				if err := v.Remove(e); err != nil {
					t.Errorf("Remove(%+v): %v", e, err)
				}
			}
			unchanged(t, "directory outside the pool", before, outside)
			if tc.at == "by-pvc" {
				return // the view's own directory is the operator's to fix
			}
			if _, err := v.Link(viewID1, c); err != nil {
				t.Errorf("Link after repair: %v", err)
			}
		})
	}
}

// Remove never removes what is not a link, and a stale link goes with its
// emptied directories.
func TestViewRemove(t *testing.T) {
	d, _ := viewPool(t)
	v := NewView(d.Root())
	if _, err := v.Link(viewID1, Claim{"ns", "claim", "pv"}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(d.Root(), "by-pvc/ns/notes.txt")
	if err := os.WriteFile(file, []byte("an operator's"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := v.Entries()
	if err != nil {
		t.Fatal(err)
	}
	want := []ViewEntry{
		{Namespace: "ns", Claim: "claim", Name: "pv", Link: true, VolumeID: viewID1},
		{Namespace: "ns", Claim: "notes.txt"},
	}
	if !reflect.DeepEqual(entries, want) {
		t.Fatalf("Entries = %+v, want %+v", entries, want)
	}
	if err := v.Remove(entries[1]); !errors.Is(err, ErrViewBlocked) {
		t.Errorf("Remove(file) = %v, want ErrViewBlocked", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("file removed: %v", err)
	}
	if err := v.Remove(entries[0]); err != nil {
		t.Errorf("Remove(link) = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d.Root(), "by-pvc/ns/claim")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("emptied claim directory left: %v", err)
	}
	if got := readVia(t, d, "volumes/"+viewID1); got != viewID1 {
		t.Error("Remove touched the volume")
	}
}

// Links and unlinks of different volumes of one claim, concurrently, as
// creates and deletes of a claim's volumes may run: an Unlink that empties
// the claim's directory must not make a concurrent Link fail or vanish.
func TestViewConcurrent(t *testing.T) {
	d, _ := viewPool(t)
	v := NewView(d.Root())
	const workers, rounds = 6, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			id := fmt.Sprintf("vol-%032x", 100+w)
			c := Claim{Namespace: "ns", Name: "claim", PV: fmt.Sprintf("pv-%d", w)}
			for range rounds {
				p, err := v.Link(id, c)
				if err == nil {
					if _, err = os.Readlink(p); err != nil {
						err = fmt.Errorf("entry %s gone right after Link: %w", p, err)
					}
				}
				if err == nil {
					err = v.Unlink(id, c)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Lstat(filepath.Join(d.Root(), "by-pvc/ns")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("view not empty after every Unlink: %v", err)
	}
}
