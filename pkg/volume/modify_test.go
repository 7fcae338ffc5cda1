package volume

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
)

// An admin switches a volume from delete to archive before deleting its
// claim: the change survives a restart, touches nothing but the record, and
// the delete archives the data.
func TestModifyThenDeleteArchives(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	req := request("name-1")
	req.PVCNamespace, req.PVCName, req.PVName = "ns", "claim", "pv-1"
	v := mustCreate(t, m, req)
	dir := e.volPath("default", v.ID)
	writeFile(t, filepath.Join(dir, "data", "file"), "workload data")
	data := tree(t, dir)
	before := without(tree(t, e.root), "catalog")
	outside := tree(t, e.outside)

	got, err := m.Modify(context.Background(), v.ID, ModifyRequest{OnDelete: OnDeleteArchive})
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	if got.OnDelete != string(OnDeleteArchive) {
		t.Errorf("Modify returned onDelete %q, want archive", got.OnDelete)
	}
	sameTree(t, "outside the catalog after Modify", before, without(tree(t, e.root), "catalog"))
	if _, err := m.Modify(context.Background(), v.ID, ModifyRequest{OnDelete: OnDeleteArchive}); err != nil {
		t.Fatalf("repeated Modify: %v", err)
	}

	// A fresh start reads the policy back from the record.
	m = e.recovered(t)
	rec, err := m.Get(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.OnDelete != string(OnDeleteArchive) || rec.CapacityBytes != v.CapacityBytes || rec.Name != v.Name {
		t.Errorf("after a restart the record is %+v, want %+v with onDelete archive", rec, v)
	}
	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if exists(t, dir) {
		t.Error("volume directory still present after an archive")
	}
	sameTree(t, "archived data", data, tree(t, e.archivePath("default", "ns_claim_pv-1_"+fixedStamp)))
	sameTree(t, "outside the pools", outside, tree(t, e.outside))
}

// Back from archive to delete: the data goes.
func TestModifyBackToDelete(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	req := request("name-1")
	req.OnDelete = OnDeleteArchive
	v := mustCreate(t, m, req)
	if _, err := m.Modify(context.Background(), v.ID, ModifyRequest{OnDelete: OnDeleteDelete}); err != nil {
		t.Fatalf("Modify: %v", err)
	}
	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := entries(t, filepath.Join(e.dirs["default"].Root(), "archive")); len(got) != 0 {
		t.Errorf("archive holds %v after a delete with onDelete=delete", got)
	}
	if exists(t, e.volPath("default", v.ID)) {
		t.Error("volume directory still present")
	}
}

func TestModifyRefused(t *testing.T) {
	creating := record(id(1), "creating", "default", catalog.StateCreating, OnDeleteDelete)
	deleting := record(id(2), "deleting", "default", catalog.StateDeleting, OnDeleteDelete)
	tests := []struct {
		name string
		// id is the volume to modify; "" means a fresh ready volume.
		id      string
		busy    func(m *Manager, id string) (release func())
		wantErr error
	}{
		{name: "not an ID", id: "../outside", wantErr: ErrNotFound},
		{name: "unknown", id: id(99), wantErr: ErrNotFound},
		{name: "being created", id: creating.ID, wantErr: ErrBusy},
		{name: "being deleted", id: deleting.ID, wantErr: ErrNotFound},
		{name: "held by a delete or publish", busy: func(m *Manager, id string) func() {
			release, err := m.Hold(id)
			if err != nil {
				t.Fatal(err)
			}
			return release
		}, wantErr: ErrBusy},
		{name: "being expanded", busy: func(m *Manager, id string) func() {
			m.expanding.TryLock(id)
			return func() { m.expanding.Unlock(id) }
		}, wantErr: ErrBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.craft(t, creating, deleting)
			m := e.manager(t)
			// Recovery would finish the crafted intents: mark the manager
			// ready without it, as the records stand for calls in flight.
			m.ready.Store(true)
			target := tt.id
			if target == "" {
				target = mustCreate(t, m, request("name-1")).ID
			}
			if tt.busy != nil {
				defer tt.busy(m, target)()
			}
			recs := e.records(t)
			before := tree(t, e.root)
			_, err := m.Modify(context.Background(), target, ModifyRequest{OnDelete: OnDeleteArchive})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Modify = %v, want %v", err, tt.wantErr)
			}
			sameTree(t, "after a refused Modify", before, tree(t, e.root))
			for i, r := range e.records(t) {
				if r.OnDelete != recs[i].OnDelete {
					t.Errorf("record %s changed onDelete to %s", r.ID, r.OnDelete)
				}
			}
		})
	}
}
