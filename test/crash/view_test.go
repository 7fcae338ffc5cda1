package crash

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkView checks, after a restart, that the pool's claim view matches the
// catalog: each ready volume made for a claim has exactly one entry, in
// by-pvc/<namespace>/<claim>/, named after its PV (or its ID), leading to
// its directory; nothing else is in the view, not even an empty directory.
func checkView(t *testing.T, h *harness) {
	t.Helper()
	records := readRecords(t, filepath.Join(h.dataDir, "catalog", "volumes"))
	top := filepath.Join(h.dataDir, "by-pvc")
	entries := make(map[string]int) // volume ID -> entries leading to it
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if p == top && os.IsNotExist(err) {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		parts := strings.Split(rel, "/")
		switch {
		case rel == ".":
			return nil
		case d.IsDir() && len(parts) < 3:
			if names, err := os.ReadDir(p); err != nil || len(names) == 0 {
				t.Errorf("by-pvc/%s is an empty directory after recovery (%v)", rel, err)
			}
			return nil
		case d.Type()&fs.ModeSymlink == 0 || len(parts) != 3:
			t.Errorf("by-pvc/%s is not a link to a volume at by-pvc/<namespace>/<claim>/<entry>", rel)
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		id, ok := strings.CutPrefix(target, "../../../volumes/")
		r, known := records[id]
		switch {
		case !ok || !idPattern.MatchString(id):
			t.Errorf("by-pvc/%s links to %q, not to a volume directory of the pool", rel, target)
		case !known || r.State != "ready":
			t.Errorf("by-pvc/%s links to %s, which is not a ready volume (record %+v present %v)", rel, id, r, known)
		case r.PVCNamespace != parts[0] || r.PVCName != parts[1] || (parts[2] != r.PVName && parts[2] != id):
			t.Errorf("by-pvc/%s links to %s, made for claim %s/%s with PV %s", rel, id, r.PVCNamespace, r.PVCName, r.PVName)
		default:
			entries[id]++
			// Followed here, by the test, as an operator would.
			via, err1 := os.Stat(p)
			dir, err2 := os.Stat(filepath.Join(h.dataDir, "volumes", id))
			if err1 != nil || err2 != nil || !os.SameFile(via, dir) {
				t.Errorf("by-pvc/%s does not lead to volumes/%s (%v, %v)", rel, id, err1, err2)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the claim view: %v", err)
	}
	for id, r := range records {
		want := 0
		if r.State == "ready" && r.PVCNamespace != "" && r.PVCName != "" {
			want = 1
		}
		if entries[id] != want {
			t.Errorf("volume %s (claim %s/%s, state %s) has %d entries in the claim view, want %d", id, r.PVCNamespace, r.PVCName, r.State, entries[id], want)
		}
	}
}
