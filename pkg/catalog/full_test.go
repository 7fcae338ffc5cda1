package catalog

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"
)

// On a full filesystem a record that exists can still change state (it is
// rewritten in place, in the blocks it has); a new record, or a change that
// does not fit, is ErrNoSpace naming the catalog's directory and leaves the
// record as it was.
func TestPutOnFullFilesystem(t *testing.T) {
	for _, k := range []testfs.Kind{testfs.Ext4, testfs.XFS, testfs.Btrfs} {
		t.Run(string(k), func(t *testing.T) { putOnFullFilesystem(t, testfs.Mount(t, k, 0)) })
	}
}

func putOnFullFilesystem(t *testing.T, mnt string) {
	dir := filepath.Join(mnt, "catalog")
	c := open(t, dir)
	v := vol("vol-a", "pv-a")
	mustPut(t, c, v)
	s := snap("snap-a", "s-a", "vol-a")
	if err := c.PutSnapshot(s); err != nil {
		t.Fatal(err)
	}
	testfs.Fill(t, mnt)

	if err := c.Put(vol("vol-b", "pv-b")); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Put of a new record = %v, want ErrNoSpace naming %s", err, dir)
	}
	if _, err := c.GetByName("pv-b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused Put left its name claimed: %v", err)
	}
	big := v
	big.Parameters = map[string]string{"x": strings.Repeat("x", 2*recordPage)}
	if err := c.Put(big); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Put of a record that does not fit in place = %v, want ErrNoSpace", err)
	}

	v.State, v.ReclaimTarget = StateDeleting, strings.Repeat("n", 255)
	mustPut(t, c, v)
	s.State = StateDeleting
	if err := c.PutSnapshot(s); err != nil {
		t.Fatalf("PutSnapshot of a delete intent on a full filesystem: %v", err)
	}
	names, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	if len(names) != 1 {
		t.Errorf("volumes/ holds %d entries, want the one record", len(names))
	}

	// What was written in place is what a restart reads.
	c = open(t, dir)
	if got, err := c.Get("vol-a"); err != nil || !equal(got, v) {
		t.Errorf("after reopening, Get = %+v, %v, want %+v", got, err, v)
	}
	if got, err := c.GetSnapshot("snap-a"); err != nil || got.State != StateDeleting {
		t.Errorf("after reopening, GetSnapshot = %+v, %v", got, err)
	}
	if err := c.Delete("vol-a"); err != nil {
		t.Errorf("Delete on a full filesystem: %v", err)
	}
}

// Records written by an earlier version have no padding, so they could not
// take a delete intent in place; Pad rewrites them with room, after which
// a delete intent is recorded on a full filesystem as for any record.
func TestPadRecordsOfEarlierVersions(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Ext4, 0)
	dir := filepath.Join(mnt, "catalog")
	c := open(t, dir)
	v, s := vol("vol-old", "pv-old"), snap("snap-old", "s-old", "vol-old")
	mustPut(t, c, vol("vol-new", "pv-new"))
	for path, rec := range map[string]any{recordPath(dir, v.ID): v, snapPath(dir, s.ID): s} {
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c = open(t, dir)
	if n, err := c.Pad(); err != nil || n != 2 {
		t.Fatalf("Pad = %d, %v; want the 2 records of the earlier version", n, err)
	}
	if n, err := open(t, dir).Pad(); err != nil || n != 0 {
		t.Errorf("second Pad = %d, %v; want nothing left to do", n, err)
	}
	testfs.Fill(t, mnt)
	v.State, v.ReclaimTarget = StateDeleting, strings.Repeat("n", 255)
	mustPut(t, c, v)
	s.State = StateDeleting
	if err := c.PutSnapshot(s); err != nil {
		t.Fatalf("PutSnapshot of a delete intent on a full filesystem: %v", err)
	}
	c = open(t, dir)
	if got, err := c.Get(v.ID); err != nil || !equal(got, v) {
		t.Errorf("after reopening, Get = %+v, %v, want %+v", got, err, v)
	}
}
