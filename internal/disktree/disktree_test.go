package disktree

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDescribe(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	before, err := Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 3 || before["l"] == "" || before["f"] == "" {
		t.Fatalf("Describe = %v, want root, f and l", before)
	}
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	if after["f"] == before["f"] {
		t.Fatal("a changed file content is not seen")
	}
	if _, err := Describe(filepath.Join(root, "missing")); err == nil {
		t.Fatal("Describe of a missing root succeeded")
	}
}

func TestDiff(t *testing.T) {
	before := map[string]string{"a": "1", "b": "2"}
	after := map[string]string{"a": "1", "b": "3", "c": "4"}
	if d := Diff(before, before); len(d) != 0 {
		t.Fatalf("Diff of equal trees = %v", d)
	}
	if d := Diff(before, after); len(d) != 2 {
		t.Fatalf("Diff = %v, want b changed and c appeared", d)
	}
	if d := Diff(after, before); len(d) != 2 {
		t.Fatalf("Diff = %v, want b changed and c disappeared", d)
	}
}
