package volume

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
)

func snapRecord(n int, poolName string, state catalog.State) Snapshot {
	return Snapshot{ID: snapID(n), Name: snapID(n) + "-name", SourceVolumeID: id(100), Pool: poolName,
		SizeBytes: 1 << 20, CreatedAt: fixedNow.UTC(), State: state}
}

// craftSnapshots writes snapshot records straight into the catalog, as a
// crash would have left them.
func (e *env) craftSnapshots(t *testing.T, snaps ...Snapshot) {
	t.Helper()
	cat, _, err := catalog.Open(e.catDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if err := cat.PutSnapshot(s); err != nil {
			t.Fatal(err)
		}
	}
}

// Each case crafts what a crash during a snapshot operation could leave and
// checks what recovery made of it.
func TestRecoverSnapshots(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(t *testing.T, e *env)
		wantRecords []string // snapshot IDs whose records remain
		wantGone    []string // snapshot IDs whose directories must be gone
		wantOrphans []string // snapshot directory names in the default pool
	}{
		{
			name: "creating with directory",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "default", catalog.StateCreating))
				writeFile(t, filepath.Join(e.snapPath("default", snapID(1)), "partial"), "x")
				symlink(t, e.outside, filepath.Join(e.snapPath("default", snapID(1)), "to-outside"))
			},
			wantGone: []string{snapID(1)},
		},
		{
			name: "creating without directory",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "default", catalog.StateCreating))
			},
		},
		{
			name: "deleting",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "other", catalog.StateDeleting))
				writeFile(t, filepath.Join(e.snapPath("other", snapID(1)), "data"), "x")
			},
			wantGone: []string{snapID(1)},
		},
		{
			name: "deleting, directory already gone",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "default", catalog.StateDeleting))
			},
		},
		{
			name: "ready",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "default", catalog.StateReady), snapRecord(2, "other", catalog.StateReady))
				writeFile(t, filepath.Join(e.snapPath("default", snapID(1)), "data"), "x")
				writeFile(t, filepath.Join(e.snapPath("other", snapID(2)), "data"), "x")
			},
			wantRecords: []string{snapID(1), snapID(2)},
		},
		{
			name: "directory without record",
			setup: func(t *testing.T, e *env) {
				writeFile(t, filepath.Join(e.snapPath("default", snapID(3)), "data"), "whose?")
			},
			wantOrphans: []string{snapID(3)},
		},
		{
			name: "pool not configured",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(4, "gone", catalog.StateReady), snapRecord(5, "gone", catalog.StateCreating),
					snapRecord(6, "gone", catalog.StateDeleting))
			},
			wantRecords: []string{snapID(4), snapID(5), snapID(6)},
		},
		{
			name: "restore left creating",
			setup: func(t *testing.T, e *env) {
				e.craftSnapshots(t, snapRecord(1, "default", catalog.StateReady))
				writeFile(t, filepath.Join(e.snapPath("default", snapID(1)), "data"), "x")
				v := record(id(1), "restored", "default", catalog.StateCreating, OnDeleteDelete)
				v.SourceSnapshotID = snapID(1)
				e.craft(t, v)
				writeFile(t, filepath.Join(e.volPath("default", id(1)), "data"), "half copied")
			},
			wantRecords: []string{snapID(1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "default", "other")
			// A bystander volume with a snapshot in each pool.
			for i, p := range []string{"default", "other"} {
				v := record(id(100+i), "bystander-"+p, p, catalog.StateReady, OnDeleteDelete)
				e.craft(t, v)
				writeFile(t, filepath.Join(e.volPath(p, v.ID), "data"), "bystander")
				s := snapRecord(100+i, p, catalog.StateReady)
				s.Name = "bystander-" + p
				e.craftSnapshots(t, s)
				writeFile(t, filepath.Join(e.snapPath(p, s.ID), "data"), "bystander snapshot")
			}
			outside := tree(t, e.outside)
			tt.setup(t, e)
			keep := make(map[string]map[string]string)
			for i, p := range []string{"default", "other"} {
				keep[p] = tree(t, e.snapPath(p, snapID(100+i)))
			}

			m := e.recovered(t)
			var got []string
			for _, s := range m.cat.ListSnapshots() {
				if s.ID != snapID(100) && s.ID != snapID(101) {
					got = append(got, s.ID)
				}
			}
			if !reflect.DeepEqual(got, tt.wantRecords) {
				t.Errorf("snapshot records = %v, want %v", got, tt.wantRecords)
			}
			for _, s := range m.cat.ListSnapshots() {
				if s.Pool != "gone" && s.State != catalog.StateReady {
					t.Errorf("snapshot %s left %s", s.ID, s.State)
				}
			}
			for _, v := range m.cat.List() {
				if v.State != catalog.StateReady {
					t.Errorf("volume %s left %s", v.ID, v.State)
				}
			}
			for _, id := range tt.wantGone {
				for _, p := range []string{"default", "other"} {
					if exists(t, e.snapPath(p, id)) {
						t.Errorf("snapshot directory %s/%s still present", p, id)
					}
				}
			}
			var wantOrphans []Orphan
			for _, d := range tt.wantOrphans {
				wantOrphans = append(wantOrphans, Orphan{Pool: "default", Path: e.snapPath("default", d), Snapshot: true})
				if !exists(t, filepath.Join(e.snapPath("default", d), "data")) {
					t.Errorf("orphan %s was touched", d)
				}
			}
			if got := m.Orphans(); !reflect.DeepEqual(got, wantOrphans) {
				t.Errorf("Orphans = %v, want %v", got, wantOrphans)
			}
			for i, p := range []string{"default", "other"} {
				sameTree(t, "bystander snapshot in "+p, keep[p], tree(t, e.snapPath(p, snapID(100+i))))
				if _, err := m.GetSnapshot(snapID(100 + i)); err != nil {
					t.Errorf("bystander snapshot: %v", err)
				}
			}
			sameTree(t, "outside", outside, tree(t, e.outside))

			before := tree(t, e.root)
			m = e.recovered(t)
			sameTree(t, "second recovery", before, tree(t, e.root))
			if got := m.Orphans(); !reflect.DeepEqual(got, wantOrphans) {
				t.Errorf("Orphans after a second recovery = %v, want %v", got, wantOrphans)
			}
		})
	}
}

// Recovery's log line carries the snapshot figures after the volume ones.
func TestRecoverSnapshotCounts(t *testing.T) {
	e := newEnv(t)
	e.craftSnapshots(t, snapRecord(1, "default", catalog.StateCreating), snapRecord(2, "default", catalog.StateDeleting),
		snapRecord(3, "default", catalog.StateReady))
	m := e.manager(t)
	r := m.recoverSnapshots(context.Background())
	if r.rolledBack != 1 || r.finished != 1 || r.ready != 1 || r.stuck != 0 {
		t.Errorf("recoverSnapshots = %+v, want 1 rolled back, 1 finished, 1 ready", r)
	}
}
