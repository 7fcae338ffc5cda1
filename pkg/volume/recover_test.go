package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

// Each case crafts what a crash could leave on disk, starts a fresh manager
// on it and checks what recovery made of it.
func TestRecover(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
		check func(t *testing.T, e *env, m *Manager)
		// wantRecords are the IDs whose records must remain.
		wantRecords []string
		wantOrphans []string // volume directory names
	}{
		{
			name: "creating with directory",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(1), "pv-1", "default", catalog.StateCreating, OnDeleteRetain))
				writeFile(t, filepath.Join(e.volPath("default", id(1)), "partial"), "x")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				if exists(t, e.volPath("default", id(1))) {
					t.Error("directory of an unfinished create is still present")
				}
			},
		},
		{
			name: "creating without directory",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(1), "pv-1", "default", catalog.StateCreating, OnDeleteDelete))
			},
		},
		{
			name: "deleting, onDelete=delete",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteDelete))
				writeFile(t, filepath.Join(e.volPath("default", id(1)), "data"), "x")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				if exists(t, e.volPath("default", id(1))) {
					t.Error("directory of an unfinished delete is still present")
				}
			},
		},
		{
			name: "deleting, onDelete=delete, directory already in trash",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteDelete))
				writeFile(t, filepath.Join(e.dirs["default"].Root(), ".trash", id(1), "data"), "x")
			},
		},
		{
			name: "deleting, onDelete=archive, already moved",
			setup: func(t *testing.T, e *env) {
				v := record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteArchive)
				v.ReclaimTarget = "pv-1_20200101T000000Z"
				e.craft(t, v)
				writeFile(t, filepath.Join(e.archivePath("default", v.ReclaimTarget), "data"), "archived")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				data, err := os.ReadFile(filepath.Join(e.archivePath("default", "pv-1_20200101T000000Z"), "data"))
				if err != nil || string(data) != "archived" {
					t.Errorf("archived data = %q, %v", data, err)
				}
				if got := entries(t, filepath.Join(e.dirs["default"].Root(), "archive")); len(got) != 1 {
					t.Errorf("archive holds %v, want the one archive", got)
				}
			},
		},
		{
			name: "deleting, onDelete=archive, not yet moved",
			setup: func(t *testing.T, e *env) {
				v := record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteArchive)
				v.ReclaimTarget = "pv-1_20200101T000000Z"
				e.craft(t, v)
				writeFile(t, filepath.Join(e.volPath("default", id(1)), "data"), "archived")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				if exists(t, e.volPath("default", id(1))) {
					t.Error("volume directory still present")
				}
				if !exists(t, filepath.Join(e.archivePath("default", "pv-1_20200101T000000Z"), "data")) {
					t.Error("data not archived under the recorded name")
				}
			},
		},
		{
			name: "deleting, onDelete=retain",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteRetain))
				writeFile(t, filepath.Join(e.volPath("default", id(1)), "data"), "kept")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				dir := e.volPath("default", id(1))
				if note := retainNote(t, dir, id(1)); note.VolumeID != id(1) || note.Name != "pv-1" {
					t.Errorf("retain note = %+v", note)
				}
				if !exists(t, filepath.Join(dir, "data")) {
					t.Error("retained data lost")
				}
			},
		},
		{
			name: "trash leftovers",
			setup: func(t *testing.T, e *env) {
				trash := filepath.Join(e.dirs["default"].Root(), ".trash")
				writeFile(t, filepath.Join(trash, id(7), "deep", "file"), "x")
				symlink(t, e.outside, filepath.Join(trash, id(7), "to-outside"))
				writeFile(t, filepath.Join(e.dirs["other"].Root(), ".trash", id(8), "file"), "x")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				for _, p := range []string{"default", "other"} {
					if got := entries(t, filepath.Join(e.dirs[p].Root(), ".trash")); len(got) != 0 {
						t.Errorf("%s/.trash holds %v", p, got)
					}
				}
			},
		},
		{
			name:        "directory without record",
			setup:       func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.volPath("default", id(3)), "data"), "whose?") },
			wantOrphans: []string{id(3)},
		},
		{
			name: "retained directory without record",
			setup: func(t *testing.T, e *env) {
				writeFile(t, filepath.Join(e.volPath("default", id(4)), "data"), "kept")
				if err := e.dirs["default"].Retain(id(4), pool.RetainNote{VolumeID: id(4)}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "ready volumes",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(5), "pv-5", "default", catalog.StateReady, OnDeleteDelete),
					record(id(6), "pv-6", "other", catalog.StateReady, OnDeleteDelete))
				writeFile(t, filepath.Join(e.volPath("default", id(5)), "data"), "x")
				writeFile(t, filepath.Join(e.volPath("other", id(6)), "data"), "x")
			},
			check: func(t *testing.T, e *env, m *Manager) {
				// Each pool also holds its bystander.
				for p, want := range map[string]int64{"default": 2 << 20, "other": 2 << 20} {
					if c, err := m.Capacity(p); err != nil || c.Promised != want {
						t.Errorf("pool %s promised %d, %v; want %d", p, c.Promised, err, want)
					}
				}
				if got := len(m.List()); got != 4 {
					t.Errorf("%d volumes listed, want 4", got)
				}
			},
			wantRecords: []string{id(5), id(6)},
		},
		{
			name: "ready volume whose directory is gone",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(5), "pv-5", "default", catalog.StateReady, OnDeleteDelete))
			},
			check: func(t *testing.T, e *env, m *Manager) {
				v, err := m.Get(id(5))
				if err != nil {
					t.Fatal(err)
				}
				if abnormal, _ := condition(m, v); !abnormal {
					t.Error("volume without directory is not abnormal")
				}
			},
			wantRecords: []string{id(5)},
		},
		{
			name: "pool not configured",
			setup: func(t *testing.T, e *env) {
				e.craft(t, record(id(9), "pv-9", "gone", catalog.StateReady, OnDeleteDelete),
					record(id(10), "pv-10", "gone", catalog.StateDeleting, OnDeleteDelete),
					record(id(11), "pv-11", "gone", catalog.StateCreating, OnDeleteDelete))
			},
			check: func(t *testing.T, e *env, m *Manager) {
				v, err := m.Get(id(9))
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if abnormal, _ := condition(m, v); !abnormal {
					t.Error("volume in an unconfigured pool is not abnormal")
				}
				if got := m.List(); len(got) != 3 || got[0].ID != id(9) {
					t.Errorf("List = %v, want pv-9 and the bystanders", got)
				}
			},
			wantRecords: []string{id(9), id(10), id(11)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "default", "other")
			// A bystander in each pool that recovery must leave alone.
			bystanders := map[string]Volume{
				"default": record(id(100), "bystander-a", "default", catalog.StateReady, OnDeleteDelete),
				"other":   record(id(101), "bystander-b", "other", catalog.StateReady, OnDeleteDelete),
			}
			for p, b := range bystanders {
				e.craft(t, b)
				writeFile(t, filepath.Join(e.volPath(p, b.ID), "data"), "bystander")
				symlink(t, e.outside, filepath.Join(e.volPath(p, b.ID), "to-outside"))
			}
			outside := tree(t, e.outside)
			tt.setup(t, e)
			keep := make(map[string]map[string]string)
			for p, b := range bystanders {
				keep[p] = tree(t, e.volPath(p, b.ID))
			}

			m := e.manager(t)
			if m.Ready() {
				t.Fatal("ready before Recover")
			}
			if err := m.Recover(context.Background()); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if !m.Ready() {
				t.Error("not ready after Recover")
			}
			if tt.check != nil {
				tt.check(t, e, m)
			}

			var gotRecords []string
			for _, v := range e.records(t) {
				if v.ID != id(100) && v.ID != id(101) {
					gotRecords = append(gotRecords, v.ID)
				}
			}
			if !reflect.DeepEqual(gotRecords, tt.wantRecords) {
				t.Errorf("records = %v, want %v", gotRecords, tt.wantRecords)
			}
			var wantOrphans []Orphan
			for _, d := range tt.wantOrphans {
				wantOrphans = append(wantOrphans, Orphan{Pool: "default", Path: e.volPath("default", d)})
				if !exists(t, filepath.Join(e.volPath("default", d), "data")) {
					t.Errorf("orphan %s was touched", d)
				}
			}
			if got := m.Orphans(); !reflect.DeepEqual(got, wantOrphans) {
				t.Errorf("Orphans = %v, want %v", got, wantOrphans)
			}
			for p, b := range bystanders {
				sameTree(t, "bystander in "+p, keep[p], tree(t, e.volPath(p, b.ID)))
			}
			sameTree(t, "outside", outside, tree(t, e.outside))

			// Recovering again, as after another crash, changes nothing.
			before := tree(t, e.root)
			m = e.recovered(t)
			sameTree(t, "second recovery", before, tree(t, e.root))
			if got := m.Orphans(); !reflect.DeepEqual(got, wantOrphans) {
				t.Errorf("Orphans after a second recovery = %v, want %v", got, wantOrphans)
			}
		})
	}
}

func TestListAndGetHideUnfinished(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	ready := mustCreate(t, m, request("pv-ready"))
	for _, v := range []Volume{
		record(id(1), "pv-creating", "default", catalog.StateCreating, OnDeleteDelete),
		record(id(2), "pv-deleting", "default", catalog.StateDeleting, OnDeleteDelete),
	} {
		if err := m.cat.Put(v); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.List(); len(got) != 1 || got[0].ID != ready.ID {
		t.Errorf("List = %v, want only %s", got, ready.ID)
	}
	if _, err := m.Get(id(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a volume being created = %v, want ErrNotFound", err)
	}
	if _, err := m.Get(id(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a volume being deleted = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "../x", "vol-1", id(1) + "/"} {
		if _, err := m.Get(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

func TestRun(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	writeFile(t, filepath.Join(e.volPath("default", v.ID), "data"), string(make([]byte, 1<<20)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, time.Hour) }()
	// The first pass runs at once; wait for it to record the usage.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := m.Capacity(""); c.Promised < v.CapacityBytes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not measure the volume")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil when the context ends", err)
	}
}
