package volume

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/pkg/catalog"
)

// A record the driver cannot understand (here: a state it does not know,
// as a newer version or a hand edit could leave) is kept and reported, and
// its volume is neither served nor deleted: DeleteVolume of its ID changes
// nothing on disk.
func TestUnreadableRecordIsKept(t *testing.T) {
	for name, content := range map[string]string{
		"unknown state": `{"id":"%s","name":"pv-1","pool":"default","state":"migrating","onDelete":"delete"}`,
		"no state":      `{"id":"%s","name":"pv-1","pool":"default","onDelete":"delete"}`,
		"truncated":     `{"id":"%s","name":"pv-1","pool":"def`,
	} {
		t.Run(name, func(t *testing.T) { unreadableRecordIsKept(t, content) })
	}
}

func unreadableRecordIsKept(t *testing.T, content string) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	writeFile(t, filepath.Join(e.volPath("default", v.ID), "data"), "precious")
	record := filepath.Join(e.catDir, "volumes", v.ID+".json")
	if err := os.WriteFile(record, []byte(strings.Replace(content, "%s", v.ID, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, problems, err := catalog.Open(e.catDir)
	if err != nil || len(problems) != 1 {
		t.Fatalf("catalog.Open = %v, problems %v; want one problem", err, problems)
	}
	m, err = New(cat, maps.Clone(e.pools), "default", defaultCap, func() time.Time { return e.clock })
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if p := m.CatalogProblems(); len(p) != 1 || p[0].File != record || p[0].ID != v.ID {
		t.Errorf("CatalogProblems = %v, want %s", p, record)
	}
	if o := m.Orphans(); len(o) != 0 {
		t.Errorf("Orphans = %v, want none: the directory is reported with its record", o)
	}
	before, err := disktree.Describe(e.root)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(context.Background(), v.ID); !errors.Is(err, catalog.ErrUnreadable) {
		t.Errorf("Delete = %v, want ErrUnreadable", err)
	}
	if _, err := m.Get(v.ID); !errors.Is(err, catalog.ErrUnreadable) {
		t.Errorf("Get = %v, want ErrUnreadable", err)
	}
	if _, err := m.Create(context.Background(), request("pv-2")); err != nil {
		t.Errorf("Create next to an unreadable record: %v", err)
	}
	after, err := disktree.Describe(e.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disktree.Diff(before, after) {
		if strings.Contains(d, v.ID) {
			t.Errorf("the unreadable volume's files changed: %s", d)
		}
	}
	if len(m.List()) != 1 {
		t.Errorf("List = %v, want only pv-2", m.List())
	}
}
