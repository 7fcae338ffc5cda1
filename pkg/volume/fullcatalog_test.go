package volume

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/catalog"
)

// A delete on a full catalog filesystem records its intent in place; a
// stop right after it (here: the removal fails, as a kill before it would
// leave things) is finished by the next start, and nothing else is lost.
func TestDeleteOnFullCatalogInterrupted(t *testing.T) {
	e := newEnv(t)
	mnt := testfs.Mount(t, testfs.Ext4, 16<<20)
	e.catDir = filepath.Join(mnt, "catalog")
	e.pools["default"] = failingRemove{e.dirs["default"]}
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	kept := mustCreate(t, m, request("pv-2"))
	writeFile(t, filepath.Join(e.volPath("default", kept.ID), "file"), "kept")
	testfs.Fill(t, mnt)

	if err := m.Delete(context.Background(), v.ID); !errors.Is(err, errInjected) {
		t.Fatalf("Delete = %v, want the pool's error", err)
	}
	recs := e.records(t)
	if len(recs) != 2 || recs[0].ID != min(v.ID, kept.ID) {
		t.Fatalf("records = %+v, want both volumes", recs)
	}
	for _, r := range recs {
		if want := map[string]catalog.State{v.ID: catalog.StateDeleting, kept.ID: catalog.StateReady}[r.ID]; r.State != want {
			t.Errorf("record %s is %s, want %s", r.ID, r.State, want)
		}
	}

	e.pools["default"] = e.dirs["default"]
	m = e.recovered(t)
	if exists(t, e.volPath("default", v.ID)) {
		t.Error("recovery did not finish the delete")
	}
	if got, err := m.Get(kept.ID); err != nil || got.CapacityBytes != kept.CapacityBytes {
		t.Errorf("kept volume = %+v, %v", got, err)
	}
	if !exists(t, filepath.Join(e.volPath("default", kept.ID), "file")) {
		t.Error("kept volume lost its data")
	}
}
