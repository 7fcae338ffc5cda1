package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"
)

func snap(id, name, source string) Snapshot {
	return Snapshot{
		ID:             id,
		Name:           name,
		SourceVolumeID: source,
		Pool:           "default",
		SizeBytes:      1 << 30,
		Block:          true,
		CreatedAt:      created,
		State:          StateReady,
		Parameters:     map[string]string{"csi.storage.k8s.io/volumesnapshot/name": name},
	}
}

func equalSnap(a, b Snapshot) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func snapPath(dir, id string) string { return filepath.Join(dir, "snapshots", id+".json") }

func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	mustPut(t, c, vol("vol-a", "shared-name"))
	snaps := []Snapshot{snap("snap-b", "s-b", "vol-a"), snap("snap-a", "s-a", "vol-a"), snap("snap-c", "shared-name", "vol-gone")}
	for _, s := range snaps {
		if err := c.PutSnapshot(s); err != nil {
			t.Fatalf("PutSnapshot(%s): %v", s.ID, err)
		}
	}
	check := func(t *testing.T, c *Catalog, want []Snapshot) {
		t.Helper()
		for _, s := range want {
			if got, err := c.GetSnapshot(s.ID); err != nil || !equalSnap(got, s) {
				t.Errorf("GetSnapshot(%s) = %+v, %v; want %+v", s.ID, got, err, s)
			}
			if got, err := c.GetSnapshotByName(s.Name); err != nil || !equalSnap(got, s) {
				t.Errorf("GetSnapshotByName(%s) = %+v, %v; want %+v", s.Name, got, err, s)
			}
		}
		list := c.ListSnapshots()
		if len(list) != len(want) || c.SnapshotLen() != len(want) {
			t.Fatalf("ListSnapshots has %d records, SnapshotLen %d, want %d", len(list), c.SnapshotLen(), len(want))
		}
		if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].ID < list[j].ID }) {
			t.Errorf("ListSnapshots is not sorted by ID: %v", list)
		}
		// Volumes and snapshots are separate: a name may be held by one of
		// each, and neither shows up in the other's listing.
		if v, err := c.GetByName("shared-name"); err != nil || v.ID != "vol-a" || c.Len() != 1 {
			t.Errorf("volume GetByName(shared-name) = %+v, %v (len %d)", v, err, c.Len())
		}
		if _, err := c.Get("snap-a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(snap-a) on volumes = %v, want ErrNotFound", err)
		}
		if _, err := c.GetSnapshot("vol-a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetSnapshot(vol-a) = %v, want ErrNotFound", err)
		}
	}
	check(t, c, snaps)
	t.Run("reopen", func(t *testing.T) { check(t, open(t, dir), snaps) })

	for range 2 { // deleting twice is not an error
		if err := c.DeleteSnapshot("snap-a"); err != nil {
			t.Fatalf("DeleteSnapshot: %v", err)
		}
	}
	if _, err := c.GetSnapshot("snap-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSnapshot after delete: %v", err)
	}
	if _, err := c.GetSnapshotByName("s-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSnapshotByName after delete: %v", err)
	}
	if _, err := os.Lstat(snapPath(dir, "snap-a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record file still present after delete: %v", err)
	}
	rest := []Snapshot{snaps[0], snaps[2]}
	check(t, c, rest)
	t.Run("reopen after delete", func(t *testing.T) { check(t, open(t, dir), rest) })
}

func TestSnapshotStates(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	s := snap("snap-a", "s-a", "vol-a")
	for _, st := range []State{StateCreating, StateReady, StateDeleting} {
		s.State = st
		if err := c.PutSnapshot(s); err != nil {
			t.Fatal(err)
		}
		got, err := open(t, dir).GetSnapshot("snap-a")
		if err != nil || got.State != st {
			t.Errorf("after reopen, state = %q, %v; want %q", got.State, err, st)
		}
	}
	if names := snapFiles(t, dir); !reflect.DeepEqual(names, []string{"snap-a.json"}) {
		t.Errorf("snapshot record directory holds %v", names)
	}
}

func TestSnapshotNameTaken(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	first := snap("snap-a", "s", "vol-a")
	if err := c.PutSnapshot(first); err != nil {
		t.Fatal(err)
	}
	if err := c.PutSnapshot(snap("snap-b", "s", "vol-b")); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("PutSnapshot of a taken name: %v, want ErrNameTaken", err)
	}
	if names := snapFiles(t, dir); !reflect.DeepEqual(names, []string{"snap-a.json"}) {
		t.Errorf("record directory holds %v after a refused put", names)
	}
	for _, c := range []*Catalog{c, open(t, dir)} {
		if got, err := c.GetSnapshotByName("s"); err != nil || !equalSnap(got, first) || c.SnapshotLen() != 1 {
			t.Errorf("GetSnapshotByName = %+v, %v (len %d); want the first record", got, err, c.SnapshotLen())
		}
	}
}

func TestSnapshotRecordsAreCopies(t *testing.T) {
	c := open(t, t.TempDir())
	s := snap("snap-a", "s-a", "vol-a")
	if err := c.PutSnapshot(s); err != nil {
		t.Fatal(err)
	}
	s.Parameters["k"] = "changed after put"
	got, _ := c.GetSnapshot("snap-a")
	got.Parameters["k"] = "changed after get"
	for _, g := range []func() Snapshot{
		func() Snapshot { s, _ := c.GetSnapshot("snap-a"); return s },
		func() Snapshot { s, _ := c.GetSnapshotByName("s-a"); return s },
		func() Snapshot { return c.ListSnapshots()[0] },
	} {
		if p := g().Parameters; len(p) != 1 || p["k"] != "" {
			t.Fatalf("caller's map changed the catalog: %v", p)
		}
	}
}

func TestSnapshotProblems(t *testing.T) {
	tests := []struct {
		name    string
		file    string // record file name, without .json
		content string
		ids     []string // IDs that must not be loaded
		names   []string // names that must not resolve
	}{
		{name: "not JSON", file: "snap-bad", content: `{"id":"snap-bad","name":"s-bad"`, ids: []string{"snap-bad"}, names: []string{"s-bad"}},
		{name: "empty file", file: "snap-bad", content: "", ids: []string{"snap-bad"}},
		{name: "wrong field type", file: "snap-bad", content: `{"id":"snap-bad","name":"s-bad","sizeBytes":"big"}`, ids: []string{"snap-bad"}, names: []string{"s-bad"}},
		{name: "ID differs from file name", file: "snap-file", content: `{"id":"snap-inner","name":"s-inner","state":"ready"}`, ids: []string{"snap-file", "snap-inner"}, names: []string{"s-inner"}},
		{name: "name held by an earlier record", file: "snap-z", content: `{"id":"snap-z","name":"s-good","state":"ready"}`, ids: []string{"snap-z"}},
		{name: "unknown state", file: "snap-u", content: `{"id":"snap-u","name":"s-u","state":"frozen"}`, ids: []string{"snap-u"}, names: []string{"s-u"}},
		{name: "no state", file: "snap-u", content: `{"id":"snap-u","name":"s-u"}`, ids: []string{"snap-u"}, names: []string{"s-u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			good := snap("snap-good", "s-good", "vol-a")
			if err := open(t, dir).PutSnapshot(good); err != nil {
				t.Fatal(err)
			}
			path := snapPath(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			c, problems, err := Open(dir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if len(problems) != 1 || problems[0].File != path || problems[0].Err == nil {
				t.Fatalf("problems = %+v, want one for %s", problems, path)
			}
			for _, id := range tt.ids {
				want := ErrNotFound
				if id == tt.file {
					want = ErrUnreadable
				}
				if _, err := c.GetSnapshot(id); !errors.Is(err, want) {
					t.Errorf("GetSnapshot(%s) = %v, want %v", id, err, want)
				}
			}
			for _, name := range tt.names {
				if _, err := c.GetSnapshotByName(name); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetSnapshotByName(%s) = %v, want ErrNotFound", name, err)
				}
			}
			if got, err := c.GetSnapshot("snap-good"); err != nil || !equalSnap(got, good) || c.SnapshotLen() != 1 {
				t.Errorf("good record = %+v, %v (len %d)", got, err, c.SnapshotLen())
			}
			// The file's ID stays reserved.
			if err := c.PutSnapshot(snap(tt.file, "s-new", "vol-a")); err == nil {
				t.Errorf("PutSnapshot reused the ID of problem file %s", path)
			}
			if data, err := os.ReadFile(path); err != nil || string(data) != tt.content {
				t.Errorf("problem file changed: %q, %v", data, err)
			}
			if _, err := c.GetSnapshotByName("s-new"); !errors.Is(err, ErrNotFound) {
				t.Errorf("refused put left its name claimed: %v", err)
			}
		})
	}
}

// A problem in one kind of record does not hide the other kind.
func TestProblemsOfBothKinds(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	mustPut(t, c, vol("vol-a", "pv-a"))
	if err := c.PutSnapshot(snap("snap-a", "s-a", "vol-a")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordPath(dir, "vol-bad"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snapPath(dir, "snap-bad"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, problems, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range problems {
		files = append(files, p.File)
	}
	sort.Strings(files)
	if want := []string{snapPath(dir, "snap-bad"), recordPath(dir, "vol-bad")}; !reflect.DeepEqual(files, want) {
		t.Errorf("problem files = %v, want %v", files, want)
	}
	if c.Len() != 1 || c.SnapshotLen() != 1 {
		t.Errorf("loaded %d volumes and %d snapshots, want 1 and 1", c.Len(), c.SnapshotLen())
	}
}

func TestOpenRemovesTemporarySnapshotFiles(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	if err := c.PutSnapshot(snap("snap-a", "s-a", "vol-a")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshots", ".tmp-snap-b-1"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = open(t, dir)
	if names := snapFiles(t, dir); !reflect.DeepEqual(names, []string{"snap-a.json"}) {
		t.Errorf("after Open the snapshot record directory holds %v", names)
	}
	if c.SnapshotLen() != 1 {
		t.Errorf("SnapshotLen = %d, want 1", c.SnapshotLen())
	}
}
