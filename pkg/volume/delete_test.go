package volume

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

func TestArchiveName(t *testing.T) {
	tests := []struct {
		name                     string
		volName, ns, pvc, pvName string
		want                     string
	}{
		{name: "PVC metadata", volName: "pvc-1", ns: "team-a", pvc: "data", pvName: "pvc-1", want: "team-a_data_pvc-1_" + fixedStamp},
		{name: "PVC metadata without PV name", volName: "pvc-1", ns: "team-a", pvc: "data", want: "team-a_data_pvc-1_" + fixedStamp},
		{name: "PV name only", volName: "vol-name", pvName: "pvc-1", want: "pvc-1_" + fixedStamp},
		{name: "no metadata", volName: "vol-name", want: "vol-name_" + fixedStamp},
		{name: "namespace without claim", volName: "vol-name", ns: "team-a", pvName: "pvc-1", want: "pvc-1_" + fixedStamp},
		{name: "metadata too long for one path element", volName: "pvc-1", ns: strings.Repeat("n", 63),
			pvc: strings.Repeat("c", 253), pvName: "pvc-1", want: "pvc-1_" + fixedStamp},
		{name: "PV name too long", volName: strings.Repeat("p", 253),
			want: strings.Repeat("p", maxArchiveName-len(fixedStamp)-1) + "_" + fixedStamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Volume{Name: tt.volName, PVCNamespace: tt.ns, PVCName: tt.pvc, PVName: tt.pvName}
			if got := archiveName(v, fixedNow); got != tt.want {
				t.Errorf("archiveName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name     string
		onDelete OnDelete
		meta     func(r *CreateRequest)
		// archive is the expected archive name, for onDelete=archive.
		archive string
	}{
		{name: "delete", onDelete: OnDeleteDelete},
		{name: "retain", onDelete: OnDeleteRetain},
		{name: "archive with PVC metadata", onDelete: OnDeleteArchive, archive: "ns_claim_pv-1_" + fixedStamp,
			meta: func(r *CreateRequest) { r.PVCNamespace, r.PVCName, r.PVName = "ns", "claim", "pv-1" }},
		{name: "archive with PV name", onDelete: OnDeleteArchive, archive: "pv-1_" + fixedStamp,
			meta: func(r *CreateRequest) { r.PVName = "pv-1" }},
		{name: "archive without metadata", onDelete: OnDeleteArchive, archive: "name-1_" + fixedStamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			req := request("name-1")
			req.OnDelete = tt.onDelete
			if tt.meta != nil {
				tt.meta(&req)
			}
			v := mustCreate(t, m, req)
			dir := e.volPath("default", v.ID)
			writeFile(t, filepath.Join(dir, "data", "file"), "workload data")
			data := tree(t, dir)

			if err := m.Delete(context.Background(), v.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			switch tt.onDelete {
			case OnDeleteDelete:
				if exists(t, dir) {
					t.Error("volume directory still present")
				}
			case OnDeleteRetain:
				note := retainNote(t, dir, v.ID)
				want := pool.RetainNote{VolumeID: v.ID, Name: "name-1", CreatedAt: fixedNow.UTC(), RetainedAt: fixedNow.UTC()}
				if !reflect.DeepEqual(note, want) {
					t.Errorf("retain note = %+v, want %+v", note, want)
				}
				sameTree(t, "retained data", data, without(tree(t, dir), ".dirvol-retained-"+v.ID+".json"))
			case OnDeleteArchive:
				if exists(t, dir) {
					t.Error("volume directory still present")
				}
				sameTree(t, "archived data", data, tree(t, e.archivePath("default", tt.archive)))
			}
			if got := entries(t, filepath.Join(e.dirs["default"].Root(), ".trash")); len(got) != 0 {
				t.Errorf(".trash holds %v", got)
			}
			if _, err := m.Get(v.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete = %v, want ErrNotFound", err)
			}
			if n := len(m.List()) + len(e.records(t)); n != 0 {
				t.Errorf("%d records remain", n)
			}
			if c, _ := m.Capacity(""); c.Promised != 0 {
				t.Errorf("deleted volume still holds %d bytes promised", c.Promised)
			}
			if o := e.recovered(t).Orphans(); len(o) != 0 {
				t.Errorf("after a restart the pool has orphans %v", o)
			}

			if err := m.Delete(context.Background(), v.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Delete = %v, want ErrNotFound", err)
			}
		})
	}
}

func retainNote(t *testing.T, dir, id string) pool.RetainNote {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".dirvol-retained-"+id+".json"))
	if err != nil {
		t.Fatalf("retain note: %v", err)
	}
	var note pool.RetainNote
	if err := json.Unmarshal(data, &note); err != nil {
		t.Fatalf("retain note: %v", err)
	}
	return note
}

func TestDeleteRefused(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{name: "empty", id: "", wantErr: ErrNotFound},
		{name: "traversal", id: "../outside", wantErr: ErrNotFound},
		{name: "traversal with prefix", id: "vol-00000000000000000000000000000001/../../outside", wantErr: ErrNotFound},
		{name: "short", id: "vol-0123", wantErr: ErrNotFound},
		{name: "upper case", id: "vol-0000000000000000000000000000000A", wantErr: ErrNotFound},
		{name: "trailing newline", id: id(1) + "\n", wantErr: ErrNotFound},
		{name: "trailing slash", id: id(1) + "/", wantErr: ErrNotFound},
		{name: "dot", id: ".", wantErr: ErrNotFound},
		{name: "pool name", id: "volumes", wantErr: ErrNotFound},
		{name: "well formed, unknown", id: id(99), wantErr: ErrNotFound},
		{name: "still creating", id: id(2), wantErr: ErrBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			// id(1) is a real volume whose directory an invalid ID might
			// reach; id(2) is being created.
			mustCreate(t, m, request("pv-0"))
			if err := m.cat.Put(record(id(1), "pv-1", "default", catalog.StateReady, OnDeleteDelete)); err != nil {
				t.Fatal(err)
			}
			if err := m.cat.Put(record(id(2), "pv-2", "default", catalog.StateCreating, OnDeleteDelete)); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{1, 2} {
				writeFile(t, filepath.Join(e.volPath("default", id(n)), "file"), "data")
			}
			before, records := tree(t, e.root), m.cat.List()
			if err := m.Delete(context.Background(), tt.id); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Delete(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
			sameTree(t, "disk", before, tree(t, e.root))
			if got := m.cat.List(); !reflect.DeepEqual(got, records) {
				t.Errorf("records changed: %v, were %v", got, records)
			}
		})
	}
	t.Run("before recovery", func(t *testing.T) {
		e := newEnv(t)
		mustCreate(t, e.recovered(t), request("pv-0"))
		v := e.records(t)[0]
		before := tree(t, e.root)
		if err := e.manager(t).Delete(context.Background(), v.ID); !errors.Is(err, ErrNotReady) {
			t.Errorf("Delete = %v, want ErrNotReady", err)
		}
		sameTree(t, "disk", before, tree(t, e.root))
	})
}

// Deleting a volume touches nothing but that volume, whatever links its
// workload left in it.
func TestDeleteKeepsEverythingElse(t *testing.T) {
	for _, onDelete := range []OnDelete{OnDeleteDelete, OnDeleteRetain, OnDeleteArchive} {
		t.Run(string(onDelete), func(t *testing.T) {
			e := newEnv(t, "default", "other")
			m := e.recovered(t)
			var siblings []Volume
			for i, p := range []string{"default", "default", "other"} {
				req := request("sibling-" + string(rune('a'+i)))
				req.Pool = p
				s := mustCreate(t, m, req)
				dir := e.volPath(p, s.ID)
				writeFile(t, filepath.Join(dir, "data", "file"), "sibling data")
				symlink(t, e.outside, filepath.Join(dir, "to-outside"))
				siblings = append(siblings, s)
			}
			writeFile(t, filepath.Join(e.outside, "sub", "file"), "more outside data")

			req := request("victim")
			req.OnDelete = onDelete
			v := mustCreate(t, m, req)
			dir := e.volPath("default", v.ID)
			sib := e.volPath("default", siblings[0].ID)
			symlink(t, sib, filepath.Join(dir, "to-sibling"))
			symlink(t, e.volPath("other", siblings[2].ID), filepath.Join(dir, "deep", "to-other-pool"))
			symlink(t, e.outside, filepath.Join(dir, "to-outside"))
			symlink(t, "../../../../outside", filepath.Join(dir, "relative-to-outside"))
			symlink(t, filepath.Join(e.outside, "file"), filepath.Join(dir, "to-outside-file"))
			if err := os.Link(filepath.Join(sib, "data", "file"), filepath.Join(dir, "hardlink-to-sibling")); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(filepath.Join(e.outside, "file"), filepath.Join(dir, "hardlink-to-outside")); err != nil {
				t.Fatal(err)
			}
			// The victim's own directory is what Delete may change, and the
			// archive it may make; the catalog is checked through records.
			victim, _ := filepath.Rel(e.root, dir)
			archive, _ := filepath.Rel(e.root, filepath.Join(e.dirs["default"].Root(), "archive"))
			before := without(tree(t, e.root), victim, archive+"/victim_"+fixedStamp, "catalog")

			if err := m.Delete(context.Background(), v.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			sameTree(t, "node", before, without(tree(t, e.root), victim, archive+"/victim_"+fixedStamp, "catalog"))
			for _, s := range siblings {
				if got, err := m.Get(s.ID); err != nil || got.State != catalog.StateReady {
					t.Errorf("sibling %s = %+v, %v", s.Name, got, err)
				}
			}
			if n := len(e.records(t)); n != len(siblings) {
				t.Errorf("%d records on disk, want %d", n, len(siblings))
			}
		})
	}
}

// A delete recorded as started is finished with the archive name fixed when
// it started, not a new one.
func TestDeleteReplaysRecordedTarget(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := record(id(1), "pv-1", "default", catalog.StateDeleting, OnDeleteArchive)
	v.ReclaimTarget = "pv-1_20200101T000000Z"
	if err := m.cat.Put(v); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.volPath("default", v.ID), "file"), "data")
	e.clock = fixedNow.Add(time.Hour)
	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := entries(t, filepath.Join(e.dirs["default"].Root(), "archive")); !reflect.DeepEqual(got, []string{v.ReclaimTarget}) {
		t.Errorf("archive holds %v, want %s", got, v.ReclaimTarget)
	}
}

// failingRemove reports failure without removing anything, as a process
// killed before the removal would.
type failingRemove struct{ pool.Pool }

func (failingRemove) Remove(string) error { return errInjected }

func TestDeleteInterrupted(t *testing.T) {
	e := newEnv(t)
	e.pools["default"] = failingRemove{e.dirs["default"]}
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	dir := e.volPath("default", v.ID)
	writeFile(t, filepath.Join(dir, "file"), "data")
	if err := m.Delete(context.Background(), v.ID); !errors.Is(err, errInjected) {
		t.Fatalf("Delete = %v, want the pool's error", err)
	}
	if len(m.List()) != 0 {
		t.Errorf("a volume being deleted is listed: %v", m.List())
	}
	if recs := e.records(t); len(recs) != 1 || recs[0].State != catalog.StateDeleting {
		t.Fatalf("records = %+v, want one deleting", recs)
	}

	e.pools["default"] = e.dirs["default"]
	m = e.recovered(t)
	if exists(t, dir) {
		t.Error("recovery did not finish the delete")
	}
	if n := len(e.records(t)); n != 0 {
		t.Errorf("%d records remain", n)
	}
	if o := m.Orphans(); len(o) != 0 {
		t.Errorf("orphans %v", o)
	}
}

func TestDeleteArchiveNameCollision(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	m.now = func() time.Time { return time.Date(2026, 11, 23, 8, 15, 0, 0, time.UTC) }
	var ids []string
	for _, name := range []string{"pv-a", "pv-b"} {
		req := request(name)
		req.OnDelete = OnDeleteArchive
		req.PVName = "pv-same"
		ids = append(ids, mustCreate(t, m, req).ID)
	}
	for _, id := range ids {
		if err := m.Delete(context.Background(), id); err != nil {
			t.Fatalf("Delete(%s): %v", id, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(e.root, "pools", "default", "archive"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("archive holds %d entries, want 2 distinct ones", len(entries))
	}
}
