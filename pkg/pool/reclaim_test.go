package pool

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRemove(t *testing.T) {
	d, root := newDir(t)
	p := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(p, "a", "b", "c"), "deep")
	writeFile(t, filepath.Join(p, "top"), "top")
	if err := os.Chmod(filepath.Join(p, "a", "b"), 0o500); err != nil {
		t.Fatal(err)
	}
	sibling := mustCreate(t, d, "vol-sibling")
	writeFile(t, filepath.Join(sibling, "data"), "sibling")
	before := tree(t, sibling)

	for attempt := range 2 {
		if err := d.Remove(testID); err != nil {
			t.Fatalf("Remove #%d: %v", attempt+1, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("volume directory still present: %v", err)
		}
		if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
			t.Errorf(".trash holds %v", got)
		}
	}
	if err := d.Remove("vol-never-made"); err != nil {
		t.Errorf("Remove of a volume never made: %v", err)
	}
	sameTree(t, "sibling", before, tree(t, sibling))
}

// A volume's content is written by pods: links in it must be removed, never
// followed.
func TestRemoveDoesNotFollowLinks(t *testing.T) {
	d, root := newDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "dir", "file"), "outside data")
	writeFile(t, filepath.Join(outside, "file"), "outside file")
	writeFile(t, filepath.Join(outside, "hardlinked"), "hard linked")
	before := tree(t, outside)

	p := mustCreate(t, d, testID)
	links := []struct{ target, link string }{
		{outside, "to-outside-dir"},
		{filepath.Join(outside, "dir"), "nested/deeper/to-outside-subdir"},
		{filepath.Join(outside, "file"), "to-outside-file"},
		{"../../../outside", "relative-to-outside"},
	}
	for _, l := range links {
		lp := filepath.Join(p, l.link)
		if err := os.MkdirAll(filepath.Dir(lp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, lp); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(outside, "hardlinked"), filepath.Join(p, "nested", "hardlink")); err != nil {
		t.Fatal(err)
	}

	if err := d.Remove(testID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	sameTree(t, "outside", before, tree(t, outside))
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume directory still present: %v", err)
	}
	if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
		t.Errorf(".trash holds %v", got)
	}
}

// The volume's own path being a link (never made by Create) is removed as a
// link.
func TestRemoveVolumeIsLink(t *testing.T) {
	d, root := newDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "file"), "outside")
	before := tree(t, outside)
	if err := os.Symlink(outside, filepath.Join(root, "volumes", testID)); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(testID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	sameTree(t, "outside", before, tree(t, outside))
}

func TestRemoveInterrupted(t *testing.T) {
	t.Run("already in trash", func(t *testing.T) {
		d, root := newDir(t)
		writeFile(t, filepath.Join(root, ".trash", testID, "a", "file"), "x")
		if err := d.Remove(testID); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
			t.Errorf(".trash holds %v", got)
		}
	})
	t.Run("in trash and in volumes", func(t *testing.T) {
		d, root := newDir(t)
		writeFile(t, filepath.Join(root, ".trash", testID, "file"), "old")
		p := mustCreate(t, d, testID)
		writeFile(t, filepath.Join(p, "file"), "new")
		before := tree(t, root)
		if err := d.Remove(testID); !errors.Is(err, ErrExists) {
			t.Fatalf("Remove = %v, want ErrExists", err)
		}
		sameTree(t, "pool", before, tree(t, root))
	})
}

func TestArchive(t *testing.T) {
	d, root := newDir(t)
	p := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(p, "sub", "file"), "archived data")
	content := tree(t, p)
	dest := "ns_claim_pv_20240305T060809Z"
	for attempt := range 2 {
		if err := d.Archive(testID, dest); err != nil {
			t.Fatalf("Archive #%d: %v", attempt+1, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("source still present: %v", err)
		}
		sameTree(t, "archive", content, tree(t, filepath.Join(root, "archive", dest)))
	}
	if err := d.Archive("vol-never-made", "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Archive of a missing volume = %v, want ErrNotFound", err)
	}
	if got := entries(t, filepath.Join(root, "archive")); !reflect.DeepEqual(got, []string{dest}) {
		t.Errorf("archive holds %v", got)
	}
}

func TestArchiveRefusesToOverwrite(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, dst string)
	}{
		{name: "non-empty directory", plant: func(t *testing.T, dst string) { writeFile(t, filepath.Join(dst, "file"), "earlier archive") }},
		{name: "empty directory", plant: func(t *testing.T, dst string) {
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file", plant: func(t *testing.T, dst string) { writeFile(t, dst, "a file") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, root := newDir(t)
			p := mustCreate(t, d, testID)
			writeFile(t, filepath.Join(p, "file"), "source data")
			tt.plant(t, filepath.Join(root, "archive", "dest"))
			before := tree(t, root)
			if err := d.Archive(testID, "dest"); !errors.Is(err, ErrExists) {
				t.Fatalf("Archive = %v, want ErrExists", err)
			}
			sameTree(t, "pool", before, tree(t, root))
		})
	}
}

func TestPurgeTrash(t *testing.T) {
	d, root := newDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "file"), "outside")
	before := tree(t, outside)
	trash := filepath.Join(root, ".trash")
	writeFile(t, filepath.Join(trash, "vol-a", "deep", "file"), "x")
	writeFile(t, filepath.Join(trash, "stray-file"), "x")
	if err := os.Symlink(outside, filepath.Join(trash, "vol-a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(trash, "vol-link")); err != nil {
		t.Fatal(err)
	}
	p := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(p, "data"), "live volume")
	live := tree(t, p)
	for range 2 {
		if err := d.PurgeTrash(); err != nil {
			t.Fatalf("PurgeTrash: %v", err)
		}
		if got := entries(t, trash); len(got) != 0 {
			t.Errorf(".trash holds %v", got)
		}
	}
	sameTree(t, "outside", before, tree(t, outside))
	sameTree(t, "live volume", live, tree(t, p))
}
