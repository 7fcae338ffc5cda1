package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var created = time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)

func vol(id, name string) Volume {
	return Volume{
		ID:            id,
		Name:          name,
		Pool:          "default",
		CapacityBytes: 1 << 30,
		Parameters:    map[string]string{"onDelete": "retain", "mode": "0750"},
		OnDelete:      "retain",
		PVCNamespace:  "ns",
		PVCName:       "claim-" + name,
		PVName:        name,
		CreatedAt:     created,
		State:         StateReady,
	}
}

func open(t *testing.T, dir string) *Catalog {
	t.Helper()
	c, problems, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	if len(problems) != 0 {
		t.Fatalf("Open(%s): unexpected problems %v", dir, problems)
	}
	return c
}

func mustPut(t *testing.T, c *Catalog, v Volume) {
	t.Helper()
	if err := c.Put(v); err != nil {
		t.Fatalf("Put(%s): %v", v.ID, err)
	}
}

func equal(a, b Volume) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func recordPath(dir, id string) string { return filepath.Join(dir, "volumes", id+".json") }

// dirNames lists the entries of the catalog's record directory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	vols := []Volume{vol("vol-c", "pv-c"), vol("vol-a", "pv-a"), vol("vol-b", "pv-b")}
	for _, v := range vols {
		mustPut(t, c, v)
	}
	check := func(t *testing.T, c *Catalog, want []Volume) {
		t.Helper()
		for _, v := range want {
			got, err := c.Get(v.ID)
			if err != nil || !equal(got, v) {
				t.Errorf("Get(%s) = %+v, %v; want %+v", v.ID, got, err, v)
			}
			got, err = c.GetByName(v.Name)
			if err != nil || !equal(got, v) {
				t.Errorf("GetByName(%s) = %+v, %v; want %+v", v.Name, got, err, v)
			}
		}
		list := c.List()
		if len(list) != len(want) || c.Len() != len(want) {
			t.Fatalf("List has %d records, Len %d, want %d", len(list), c.Len(), len(want))
		}
		if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].ID < list[j].ID }) {
			t.Errorf("List is not sorted by ID: %v", list)
		}
	}
	check(t, c, vols)
	t.Run("reopen", func(t *testing.T) { check(t, open(t, dir), vols) })

	if err := c.Delete("vol-a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := c.Get("vol-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := c.GetByName("pv-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetByName after Delete: %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(recordPath(dir, "vol-a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record file still present after Delete: %v", err)
	}
	rest := []Volume{vols[0], vols[2]}
	check(t, c, rest)
	t.Run("reopen after delete", func(t *testing.T) { check(t, open(t, dir), rest) })
}

func TestRecordsAreCopies(t *testing.T) {
	c := open(t, t.TempDir())
	v := vol("vol-a", "pv-a")
	mustPut(t, c, v)
	v.Parameters["mode"] = "changed by caller after Put"
	got, _ := c.Get("vol-a")
	got.Parameters["mode"] = "changed by caller after Get"
	for _, g := range []func() (Volume, error){
		func() (Volume, error) { return c.Get("vol-a") },
		func() (Volume, error) { return c.GetByName("pv-a") },
		func() (Volume, error) { return c.List()[0], nil },
	} {
		got, _ := g()
		if got.Parameters["mode"] != "0750" {
			t.Fatalf("caller's map changed the catalog: mode=%q", got.Parameters["mode"])
		}
	}
}

func TestPutReplaces(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	v := vol("vol-a", "pv-a")
	v.State = StateCreating
	mustPut(t, c, v)
	v.State = StateDeleting
	v.ReclaimTarget = "ns_claim_pv-a_20240305T070809Z"
	mustPut(t, c, v)
	for _, c := range []*Catalog{c, open(t, dir)} {
		got, err := c.Get("vol-a")
		if err != nil || !equal(got, v) || c.Len() != 1 {
			t.Fatalf("Get = %+v, %v (len %d); want %+v", got, err, c.Len(), v)
		}
	}

	// Giving the ID a new name frees the old one.
	v.Name = "pv-renamed"
	mustPut(t, c, v)
	if _, err := c.GetByName("pv-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old name still resolves after rename: %v", err)
	}
	if got, err := c.GetByName("pv-renamed"); err != nil || got.ID != "vol-a" {
		t.Errorf("GetByName(new name) = %+v, %v", got, err)
	}
	mustPut(t, c, vol("vol-b", "pv-a"))
}

func TestNameTaken(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	a := vol("vol-a", "pv")
	mustPut(t, c, a)
	err := c.Put(vol("vol-b", "pv"))
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("Put of a taken name: %v, want ErrNameTaken", err)
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"vol-a.json"}) {
		t.Errorf("record directory holds %v after a refused Put", names)
	}
	if _, err := c.Get("vol-b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused record is indexed: %v", err)
	}
	for _, c := range []*Catalog{c, open(t, dir)} {
		if got, err := c.GetByName("pv"); err != nil || !equal(got, a) || c.Len() != 1 {
			t.Errorf("GetByName = %+v, %v (len %d); want the first record", got, err, c.Len())
		}
	}
}

func TestConcurrentPutSameName(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = c.Put(vol(fmt.Sprintf("vol-%02d", i), "contested"))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("both vol-%02d and vol-%02d won the name", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrNameTaken):
			t.Errorf("Put vol-%02d: %v, want nil or ErrNameTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Put won the name")
	}
	wantID := fmt.Sprintf("vol-%02d", winner)
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{wantID + ".json"}) {
		t.Errorf("record directory holds %v, want only the winner", names)
	}
	for _, c := range []*Catalog{c, open(t, dir)} {
		if got, err := c.GetByName("contested"); err != nil || got.ID != wantID || c.Len() != 1 {
			t.Errorf("GetByName = %s, %v (len %d); want %s", got.ID, err, c.Len(), wantID)
		}
	}
}

func TestDeleteMissing(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	mustPut(t, c, vol("vol-a", "pv-a"))
	for _, id := range []string{"vol-missing", "vol-a", "vol-a"} {
		if err := c.Delete(id); err != nil {
			t.Errorf("Delete(%s): %v", id, err)
		}
	}
	if c.Len() != 0 || len(dirNames(t, dir)) != 0 {
		t.Errorf("catalog not empty: len %d, files %v", c.Len(), dirNames(t, dir))
	}
}

type fileID struct {
	ino   uint64
	mtime time.Time
	size  int64
}

func fileIDs(t *testing.T, dir string) map[string]fileID {
	t.Helper()
	out := make(map[string]fileID)
	for _, name := range dirNames(t, dir) {
		fi, err := os.Lstat(filepath.Join(dir, "volumes", name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = fileID{ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime(), size: fi.Size()}
	}
	return out
}

// A write touches its own record file only, however many records exist.
func TestPutWritesOneFile(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	for i := range 50 {
		mustPut(t, c, vol(fmt.Sprintf("vol-%03d", i), fmt.Sprintf("pv-%03d", i)))
	}
	changed := func(before, after map[string]fileID) []string {
		var out []string
		for name, a := range after {
			if b, ok := before[name]; !ok || b != a {
				out = append(out, name)
			}
		}
		for name := range before {
			if _, ok := after[name]; !ok {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		name string
		op   func() error
		want []string
	}{
		{name: "add", op: func() error { return c.Put(vol("vol-new", "pv-new")) }, want: []string{"vol-new.json"}},
		{name: "update", op: func() error {
			v := vol("vol-017", "pv-017")
			v.State = StateDeleting
			return c.Put(v)
		}, want: []string{"vol-017.json"}},
		{name: "delete", op: func() error { return c.Delete("vol-033") }, want: []string{"vol-033.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fileIDs(t, dir)
			time.Sleep(10 * time.Millisecond) // let an in-place rewrite show in mtime
			if err := tt.op(); err != nil {
				t.Fatal(err)
			}
			after := fileIDs(t, dir)
			if got := changed(before, after); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("changed files = %v, want %v", got, tt.want)
			}
			for name := range after {
				if strings.HasPrefix(name, ".tmp-") {
					t.Errorf("temporary file %s left behind", name)
				}
			}
		})
	}
}
