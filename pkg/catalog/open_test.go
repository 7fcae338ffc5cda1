package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
)

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	c := open(t, dir)
	if c.Len() != 0 || len(c.List()) != 0 {
		t.Fatalf("new catalog holds %d records", c.Len())
	}
	fi, err := os.Stat(filepath.Join(dir, "volumes"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("record directory not created: %v", err)
	}
}

func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	mustPut(t, c, vol("vol-a", "pv-a"))
	for _, name := range []string{".tmp-vol-a-123", ".tmp-vol-b-456", ".tmp-vol-c-789.json"} {
		if err := os.WriteFile(filepath.Join(dir, "volumes", name), []byte(`{"id":"vol-b","name":"x"`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c = open(t, dir)
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"vol-a.json"}) {
		t.Errorf("after Open the record directory holds %v", names)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
}

// Entries the catalog never writes are reported and left in place; none of
// them stops Open, and one named like a record keeps its ID reserved.
func TestOpenReportsOtherEntries(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	mustPut(t, c, vol("vol-a", "pv-a"))
	vols := filepath.Join(dir, "volumes")
	if err := os.Mkdir(filepath.Join(vols, "vol-d.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A directory named like an unfinished write, with something in it:
	// os.Remove fails on it, which must not make Open fail.
	if err := os.MkdirAll(filepath.Join(vols, ".tmp-vol-e-1", "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vols, "README"), []byte("notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(vols, "vol-a.json"), filepath.Join(vols, "vol-l.json")); err != nil {
		t.Fatal(err)
	}
	c, problems, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var files []string
	for _, p := range problems {
		files = append(files, filepath.Base(p.File))
	}
	sort.Strings(files)
	if want := []string{".tmp-vol-e-1", "README", "vol-d.json", "vol-l.json"}; !reflect.DeepEqual(files, want) {
		t.Errorf("problems = %v, want %v", problems, want)
	}
	if got := c.Problems(); len(got) != len(problems) {
		t.Errorf("Problems() = %v, want the %d of Open", got, len(problems))
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
	if len(dirNames(t, dir)) != 5 {
		t.Errorf("Open removed entries it does not own: %v", dirNames(t, dir))
	}
	for _, id := range []string{"vol-d", "vol-l"} {
		if _, err := c.Get(id); !errors.Is(err, ErrUnreadable) {
			t.Errorf("Get(%s) = %v, want ErrUnreadable", id, err)
		}
		if err := c.Put(vol(id, "pv-"+id)); err == nil {
			t.Errorf("Put reused the ID of stray entry %s", id)
		}
	}
}

func TestOpenProblems(t *testing.T) {
	tests := []struct {
		name    string
		file    string // record file name, without .json
		content string
		// names and ids that must not be loaded
		names, ids []string
	}{
		{name: "not JSON", file: "vol-bad", content: "{\"id\":\"vol-bad\",\"name\":\"pv-bad\"", ids: []string{"vol-bad"}, names: []string{"pv-bad"}},
		{name: "empty file", file: "vol-bad", content: "", ids: []string{"vol-bad"}},
		{name: "wrong field type", file: "vol-bad", content: `{"id":"vol-bad","name":"pv-bad","capacityBytes":"big"}`, ids: []string{"vol-bad"}, names: []string{"pv-bad"}},
		{name: "ID differs from file name", file: "vol-file", content: `{"id":"vol-inner","name":"pv-inner","state":"ready"}`, ids: []string{"vol-file", "vol-inner"}, names: []string{"pv-inner"}},
		{name: "name held by an earlier record", file: "vol-z", content: `{"id":"vol-z","name":"pv-good","state":"ready"}`, ids: []string{"vol-z"}},
		// A state this driver does not know must not be read as "absent":
		// DeleteVolume would then remove the volume's directory.
		{name: "unknown state", file: "vol-u", content: `{"id":"vol-u","name":"pv-u","state":"migrating"}`, ids: []string{"vol-u"}, names: []string{"pv-u"}},
		{name: "no state", file: "vol-u", content: `{"id":"vol-u","name":"pv-u"}`, ids: []string{"vol-u"}, names: []string{"pv-u"}},
		{name: "larger than a record can be", file: "vol-big", content: `{"id":"vol-big","name":"pv-big","state":"ready"}` + strings.Repeat(" ", maxRecordBytes), ids: []string{"vol-big"}, names: []string{"pv-big"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			good := vol("vol-good", "pv-good")
			mustPut(t, open(t, dir), good)
			path := recordPath(dir, tt.file)
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
			if data, err := os.ReadFile(path); err != nil || string(data) != tt.content {
				t.Errorf("problem file changed: %q, %v", data, err)
			}
			for _, id := range tt.ids {
				want := ErrNotFound
				if id == tt.file {
					want = ErrUnreadable
				}
				if _, err := c.Get(id); !errors.Is(err, want) {
					t.Errorf("Get(%s) = %v, want %v", id, err, want)
				}
			}
			for _, name := range tt.names {
				if _, err := c.GetByName(name); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetByName(%s) = %v, want ErrNotFound", name, err)
				}
			}
			if got, err := c.Get("vol-good"); err != nil || !equal(got, good) || c.Len() != 1 {
				t.Errorf("good record = %+v, %v (len %d)", got, err, c.Len())
			}

			// The file's ID stays reserved: nothing may overwrite it.
			if err := c.Put(vol(tt.file, "pv-new")); err == nil {
				t.Errorf("Put reused the ID of problem file %s", path)
			}
			if data, err := os.ReadFile(path); err != nil || string(data) != tt.content {
				t.Errorf("problem file changed by Put: %q, %v", data, err)
			}
			if _, err := c.GetByName("pv-new"); !errors.Is(err, ErrNotFound) {
				t.Errorf("refused Put left its name claimed: %v", err)
			}
		})
	}
}

// A huge sparse file named like a record costs no memory: it is refused
// after reading past the largest record, not read whole.
func TestOpenHugeSparseRecord(t *testing.T) {
	dir := t.TempDir()
	mustPut(t, open(t, dir), vol("vol-good", "pv-good"))
	f, err := os.Create(recordPath(dir, "vol-huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, problems, err := Open(dir)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if len(problems) != 1 || problems[0].File != recordPath(dir, "vol-huge") {
		t.Fatalf("problems = %v, want one for vol-huge", problems)
	}
	if _, err := c.Get("vol-huge"); !errors.Is(err, ErrUnreadable) {
		t.Errorf("Get(vol-huge) = %v, want ErrUnreadable", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Open allocated %d bytes for a catalog of one record and one 1 GiB sparse file", alloc)
	}
}
