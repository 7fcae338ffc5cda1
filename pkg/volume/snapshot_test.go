package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

func snapRequest(name, source string) SnapshotRequest {
	return SnapshotRequest{Name: name, SourceVolumeID: source,
		Parameters: map[string]string{"csi.storage.k8s.io/volumesnapshot/name": name}}
}

func mustSnapshot(t *testing.T, m *Manager, req SnapshotRequest) Snapshot {
	t.Helper()
	s, err := m.CreateSnapshot(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateSnapshot(%s): %v", req.Name, err)
	}
	return s
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// snapID returns a well-formed snapshot ID built from n.
func snapID(n int) string { return fmt.Sprintf("snap-%032x", n) }

func TestCreateSnapshot(t *testing.T) {
	e := newEnv(t, "default", "other")
	m := e.recovered(t)
	req := request("pv-1")
	req.Pool = "other"
	v := mustCreate(t, m, req)
	writeFile(t, filepath.Join(e.volPath("other", v.ID), "data"), "at snapshot time")

	s := mustSnapshot(t, m, snapRequest("snap-1", v.ID))
	if !ValidSnapshotID(s.ID) {
		t.Errorf("snapshot ID %q has not the issued shape", s.ID)
	}
	want := Snapshot{ID: s.ID, Name: "snap-1", SourceVolumeID: v.ID, Pool: "other", SizeBytes: 10 << 20,
		CreatedAt: fixedNow.UTC(), State: catalog.StateReady,
		Parameters: map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "snap-1"}}
	if fmt.Sprint(s) != fmt.Sprint(want) || s.CreatedAt.Location().String() != "UTC" {
		t.Errorf("CreateSnapshot = %+v, want %+v", s, want)
	}
	if got := readFile(t, filepath.Join(e.snapPath("other", s.ID), "data")); got != "at snapshot time" {
		t.Errorf("snapshot holds %q", got)
	}
	for _, got := range []func() (Snapshot, error){
		func() (Snapshot, error) { return m.GetSnapshot(s.ID) },
		func() (Snapshot, error) { return e.recovered(t).GetSnapshot(s.ID) },
		func() (Snapshot, error) { return m.ListSnapshots()[0], nil },
	} {
		if g, err := got(); err != nil || fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("snapshot = %+v, %v; want %+v", g, err, want)
		}
	}

	// Idempotent by name and source, and a retry changes nothing on disk.
	before := tree(t, e.root)
	if again := mustSnapshot(t, m, snapRequest("snap-1", v.ID)); again.ID != s.ID {
		t.Errorf("retry made %s, first was %s", again.ID, s.ID)
	}
	sameTree(t, "disk after a retry", before, tree(t, e.root))
	other := mustCreate(t, m, request("pv-2"))
	before = tree(t, e.root)
	if _, err := m.CreateSnapshot(context.Background(), snapRequest("snap-1", other.ID)); !errors.Is(err, ErrConflict) {
		t.Errorf("same name, other source = %v, want ErrConflict", err)
	}
	sameTree(t, "disk after a refused snapshot", before, tree(t, e.root))
	if n := len(m.ListSnapshots()); n != 1 {
		t.Errorf("%d snapshots listed, want 1", n)
	}
}

func TestCreateSnapshotRefused(t *testing.T) {
	tests := []struct {
		name    string
		source  func(m *Manager, v Volume) string
		wantErr error
	}{
		{"unknown volume", func(*Manager, Volume) string { return id(99) }, ErrNotFound},
		{"malformed ID", func(*Manager, Volume) string { return "../../etc" }, ErrNotFound},
		{"snapshot ID as source", func(*Manager, Volume) string { return snapID(1) }, ErrNotFound},
		{"volume being deleted", func(m *Manager, v Volume) string {
			v.State = catalog.StateDeleting
			_ = m.cat.Put(v)
			return v.ID
		}, ErrNotFound},
		{"volume in an unconfigured pool", func(m *Manager, v Volume) string {
			v.Pool = "gone"
			_ = m.cat.Put(v)
			return v.ID
		}, ErrPoolNotConfigured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			v := mustCreate(t, m, request("pv-1"))
			src := tt.source(m, v)
			before := tree(t, e.root)
			if _, err := m.CreateSnapshot(context.Background(), snapRequest("snap-1", src)); !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateSnapshot = %v, want %v", err, tt.wantErr)
			}
			sameTree(t, "disk", before, tree(t, e.root))
		})
	}
}

func TestCreateSnapshotNotReady(t *testing.T) {
	m := newEnv(t).manager(t)
	if _, err := m.CreateSnapshot(context.Background(), snapRequest("s", id(1))); !errors.Is(err, ErrNotReady) {
		t.Errorf("CreateSnapshot before Recover = %v", err)
	}
	if err := m.DeleteSnapshot(context.Background(), snapID(1)); !errors.Is(err, ErrNotReady) {
		t.Errorf("DeleteSnapshot before Recover = %v", err)
	}
	if _, err := m.GetSnapshot(snapID(1)); !errors.Is(err, ErrNotReady) {
		t.Errorf("GetSnapshot before Recover = %v", err)
	}
}

// failingSnapshot makes the snapshot's directory, then fails.
type failingSnapshot struct{ pool.Pool }

func (p failingSnapshot) Snapshot(volID, snapID string) error {
	if err := p.Pool.Snapshot(volID, snapID); err != nil {
		return err
	}
	return errInjected
}

func TestCreateSnapshotRollsBack(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	writeFile(t, filepath.Join(e.volPath("default", v.ID), "data"), "x")
	before := tree(t, e.root)

	e.pools["default"] = failingSnapshot{e.dirs["default"]}
	m = e.recovered(t)
	if _, err := m.CreateSnapshot(context.Background(), snapRequest("snap-1", v.ID)); !errors.Is(err, errInjected) {
		t.Fatalf("CreateSnapshot = %v, want the pool's error", err)
	}
	sameTree(t, "disk", before, tree(t, e.root))
	if n := m.cat.SnapshotLen(); n != 0 {
		t.Errorf("catalog holds %d snapshot records", n)
	}
	e.pools["default"] = e.dirs["default"]
	if s, err := e.recovered(t).CreateSnapshot(context.Background(), snapRequest("snap-1", v.ID)); err != nil || s.State != catalog.StateReady {
		t.Errorf("CreateSnapshot after a failed one = %+v, %v", s, err)
	}
}

func TestDeleteSnapshot(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	keep := mustSnapshot(t, m, snapRequest("keep", v.ID))
	s := mustSnapshot(t, m, snapRequest("snap-1", v.ID))
	writeFile(t, filepath.Join(e.snapPath("default", s.ID), "more"), "x")
	symlink(t, e.outside, filepath.Join(e.snapPath("default", s.ID), "to-outside"))
	outside := tree(t, e.outside)

	if err := m.DeleteSnapshot(context.Background(), s.ID); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	if exists(t, e.snapPath("default", s.ID)) {
		t.Error("snapshot directory still present")
	}
	sameTree(t, "outside", outside, tree(t, e.outside))
	if got := m.ListSnapshots(); len(got) != 1 || got[0].ID != keep.ID {
		t.Errorf("ListSnapshots = %v, want only %s", got, keep.ID)
	}
	if _, err := m.GetSnapshot(s.ID); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("GetSnapshot after delete = %v", err)
	}
	before := tree(t, e.root)
	for _, id := range []string{s.ID, snapID(99), "../../etc", "", v.ID, keep.ID + "/"} {
		if err := m.DeleteSnapshot(context.Background(), id); !errors.Is(err, ErrSnapshotNotFound) {
			t.Errorf("DeleteSnapshot(%q) = %v, want ErrSnapshotNotFound", id, err)
		}
	}
	sameTree(t, "disk after deletes of unknown snapshots", before, tree(t, e.root))
	if recs := e.recovered(t).cat.ListSnapshots(); len(recs) != 1 || recs[0].ID != keep.ID {
		t.Errorf("records after reopen = %v", recs)
	}
}

// failingRemoveSnapshot fails RemoveSnapshot while fail is set.
type failingRemoveSnapshot struct {
	pool.Pool
	fail *atomic.Bool
}

func (p failingRemoveSnapshot) RemoveSnapshot(id string) error {
	if p.fail.Load() {
		return errInjected
	}
	return p.Pool.RemoveSnapshot(id)
}

// A delete cut short keeps its intent: the snapshot is no longer listed,
// and the next DeleteSnapshot or start finishes it.
func TestDeleteSnapshotInterrupted(t *testing.T) {
	for _, finish := range []string{"retry", "recovery"} {
		t.Run(finish, func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			v := mustCreate(t, m, request("pv-1"))
			s := mustSnapshot(t, m, snapRequest("snap-1", v.ID))
			fail := &atomic.Bool{}
			fail.Store(true)
			e.pools["default"] = failingRemoveSnapshot{e.dirs["default"], fail}
			m = e.recovered(t)
			if err := m.DeleteSnapshot(context.Background(), s.ID); !errors.Is(err, errInjected) {
				t.Fatalf("DeleteSnapshot = %v, want the pool's error", err)
			}
			if len(m.ListSnapshots()) != 0 {
				t.Error("snapshot being deleted is listed")
			}
			if _, err := m.GetSnapshot(s.ID); !errors.Is(err, ErrSnapshotNotFound) {
				t.Errorf("GetSnapshot of a snapshot being deleted = %v", err)
			}
			if _, err := m.Create(context.Background(), CreateRequest{Name: "restore", SourceSnapshotID: s.ID,
				OnDelete: OnDeleteDelete}); !errors.Is(err, ErrSourceNotFound) {
				t.Errorf("restore from a snapshot being deleted = %v, want ErrSourceNotFound", err)
			}
			fail.Store(false)
			if finish == "retry" {
				if err := m.DeleteSnapshot(context.Background(), s.ID); err != nil {
					t.Fatalf("retried DeleteSnapshot: %v", err)
				}
			} else {
				m = e.recovered(t)
			}
			if exists(t, e.snapPath("default", s.ID)) || m.cat.SnapshotLen() != 0 {
				t.Errorf("snapshot left behind: directory %v, %d records", exists(t, e.snapPath("default", s.ID)), m.cat.SnapshotLen())
			}
		})
	}
}

func TestDeleteSnapshotBusyOrUnknownPool(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	creating := Snapshot{ID: snapID(1), Name: "s-1", SourceVolumeID: id(1), Pool: "default", State: catalog.StateCreating}
	gone := Snapshot{ID: snapID(2), Name: "s-2", SourceVolumeID: id(1), Pool: "gone", State: catalog.StateReady}
	for _, s := range []Snapshot{creating, gone} {
		if err := m.cat.PutSnapshot(s); err != nil {
			t.Fatal(err)
		}
	}
	before := tree(t, e.root)
	if err := m.DeleteSnapshot(context.Background(), creating.ID); !errors.Is(err, ErrBusy) {
		t.Errorf("DeleteSnapshot of a snapshot being created = %v, want ErrBusy", err)
	}
	if err := m.DeleteSnapshot(context.Background(), gone.ID); !errors.Is(err, ErrPoolNotConfigured) {
		t.Errorf("DeleteSnapshot in an unconfigured pool = %v, want ErrPoolNotConfigured", err)
	}
	sameTree(t, "disk", before, tree(t, e.root))
	m.creating.TryLock(creating.ID) // its CreateSnapshot is in flight
	if _, err := m.CreateSnapshot(context.Background(), snapRequest("s-1", id(1))); !errors.Is(err, ErrBusy) {
		t.Errorf("CreateSnapshot of a name being created = %v, want ErrBusy", err)
	}
}

// Snapshots are independent copies: deleting their source, with any
// reclaim policy, leaves them listed and restorable.
func TestDeleteVolumeKeepsSnapshots(t *testing.T) {
	for _, policy := range []OnDelete{OnDeleteDelete, OnDeleteRetain, OnDeleteArchive} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			req := request("pv-1")
			req.OnDelete = policy
			v := mustCreate(t, m, req)
			writeFile(t, filepath.Join(e.volPath("default", v.ID), "data"), "snapshotted")
			s := mustSnapshot(t, m, snapRequest("snap-1", v.ID))
			if err := m.Delete(context.Background(), v.ID); err != nil {
				t.Fatalf("Delete of a volume with a snapshot: %v", err)
			}
			if got, err := m.GetSnapshot(s.ID); err != nil || got.SourceVolumeID != v.ID {
				t.Errorf("GetSnapshot after its source was deleted = %+v, %v", got, err)
			}
			r := mustCreate(t, m, CreateRequest{Name: "restored", SourceSnapshotID: s.ID, OnDelete: OnDeleteDelete,
				Permissions: pool.Permissions{Mode: 0o777, UID: -1, GID: -1}})
			if got := readFile(t, filepath.Join(e.volPath("default", r.ID), "data")); got != "snapshotted" {
				t.Errorf("restored volume holds %q", got)
			}
		})
	}
}

func TestListSnapshotsHidesUnfinished(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	ready := mustSnapshot(t, m, snapRequest("ready", v.ID))
	for i, st := range []catalog.State{catalog.StateCreating, catalog.StateDeleting} {
		if err := m.cat.PutSnapshot(Snapshot{ID: snapID(i + 1), Name: string(st), SourceVolumeID: v.ID, Pool: "default", State: st}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.GetSnapshot(snapID(i + 1)); !errors.Is(err, ErrSnapshotNotFound) {
			t.Errorf("GetSnapshot of a %s snapshot = %v", st, err)
		}
	}
	if got := m.ListSnapshots(); !reflect.DeepEqual(ids(got), []string{ready.ID}) {
		t.Errorf("ListSnapshots = %v, want only %s", ids(got), ready.ID)
	}
	for _, bad := range []string{"", "../x", "snap-1", snapID(1) + "/", v.ID} {
		if _, err := m.GetSnapshot(bad); !errors.Is(err, ErrSnapshotNotFound) {
			t.Errorf("GetSnapshot(%q) = %v, want ErrSnapshotNotFound", bad, err)
		}
	}
}

func ids(snaps []Snapshot) []string {
	out := []string{}
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}
