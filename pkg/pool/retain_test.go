package pool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func testNote(retainedAt time.Time) RetainNote {
	return RetainNote{
		VolumeID:     testID,
		Name:         "pvc-1234",
		PVName:       "pvc-1234",
		PVCNamespace: "team-a",
		PVCName:      "data",
		CreatedAt:    time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		RetainedAt:   retainedAt,
	}
}

func readNote(t *testing.T, path string) (RetainNote, map[string]any) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("retain note: %v", err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("retain note is %v, not a regular file", fi.Mode())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var note RetainNote
	if err := json.Unmarshal(data, &note); err != nil {
		t.Fatalf("retain note is not JSON: %v\n%s", err, data)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	return note, raw
}

func TestRetain(t *testing.T) {
	d, root := newDir(t)
	p := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(p, "data", "file"), "workload data")
	if err := os.Symlink("/etc/passwd", filepath.Join(p, "workload-link")); err != nil {
		t.Fatal(err)
	}
	data := tree(t, p)
	notePath := filepath.Join(p, ".dirvol-retained-"+testID+".json")

	first := time.Date(2024, 3, 5, 6, 8, 9, 0, time.UTC)
	for i, at := range []time.Time{first, first.Add(time.Hour)} {
		want := testNote(at)
		if err := d.Retain(testID, want); err != nil {
			t.Fatalf("Retain #%d: %v", i+1, err)
		}
		got, raw := readNote(t, notePath)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("note = %+v, want %+v", got, want)
		}
		wantRaw := map[string]any{
			"volumeID":     testID,
			"name":         "pvc-1234",
			"pvName":       "pvc-1234",
			"pvcNamespace": "team-a",
			"pvcName":      "data",
			"createdAt":    "2024-01-02T03:04:05Z",
			"retainedAt":   at.Format(time.RFC3339),
		}
		if !reflect.DeepEqual(raw, wantRaw) {
			t.Errorf("note fields = %v, want %v", raw, wantRaw)
		}
		now := tree(t, p)
		delete(now, filepath.Base(notePath))
		sameTree(t, "volume data", data, now)
	}
	dirs, retained, err := d.Scan()
	if err != nil || !reflect.DeepEqual(dirs, []string{testID}) || !reflect.DeepEqual(retained, []string{testID}) {
		t.Errorf("Scan = %v, %v, %v", dirs, retained, err)
	}
	if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
		t.Errorf(".trash holds %v", got)
	}
}

func TestRetainMissing(t *testing.T) {
	d, _ := newDir(t)
	if err := d.Retain(testID, testNote(time.Now())); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retain of a missing volume = %v, want ErrNotFound", err)
	}
}

// Whatever a workload left at the note's name, writing the note changes
// nothing outside the volume.
func TestRetainPlantedAtNote(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, note, outside string)
	}{
		{name: "symlink to outside file", plant: func(t *testing.T, note, outside string) {
			if err := os.Symlink(filepath.Join(outside, "file"), note); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dangling symlink to outside", plant: func(t *testing.T, note, outside string) {
			if err := os.Symlink(filepath.Join(outside, "would-be-created"), note); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink to outside dir", plant: func(t *testing.T, note, outside string) {
			if err := os.Symlink(outside, note); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "hard link to outside file", plant: func(t *testing.T, note, outside string) {
			if err := os.Link(filepath.Join(outside, "file"), note); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "stale note", plant: func(t *testing.T, note, _ string) {
			writeFile(t, note, `{"volumeID":"something much longer than the new note would ever be, to catch a missing truncate ................................................................................................................................................................................................................"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, root := newDir(t)
			outside := filepath.Join(filepath.Dir(root), "outside")
			writeFile(t, filepath.Join(outside, "file"), "outside data")
			before := tree(t, outside)
			p := mustCreate(t, d, testID)
			note := filepath.Join(p, retainNoteName(testID))
			tt.plant(t, note, outside)

			want := testNote(time.Date(2024, 3, 5, 6, 8, 9, 0, time.UTC))
			if err := d.Retain(testID, want); err != nil {
				t.Fatalf("Retain: %v", err)
			}
			sameTree(t, "outside", before, tree(t, outside))
			if got, _ := readNote(t, note); !reflect.DeepEqual(got, want) {
				t.Errorf("note = %+v, want %+v", got, want)
			}
		})
	}
}

func TestRetainVolumeIsLink(t *testing.T) {
	d, root := newDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "file"), "outside data")
	before := tree(t, outside)
	if err := os.Symlink(outside, filepath.Join(root, "volumes", testID)); err != nil {
		t.Fatal(err)
	}
	if err := d.Retain(testID, testNote(time.Now())); err == nil {
		t.Error("Retain through a link at the volume's path succeeded")
	}
	sameTree(t, "outside", before, tree(t, outside))
}
