//go:build linux

package hoststate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRestore: what a run made (a path that did not exist, mounts under the
// run's root and under that path, a symlink into the root in a directory
// that existed, a changed setting) is undone, and nothing else is touched.
func TestRestore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts need root")
	}
	base := t.TempDir()
	root := filepath.Join(base, "run")
	made := filepath.Join(base, "var-lib-kubelet")
	shared := filepath.Join(base, "var-log-containers")
	setting := filepath.Join(base, "sysctl")
	for _, d := range []string{root, shared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(shared, "someone-elses.log"), "keep")
	mustWrite(t, setting, "0\n")

	s, err := Take([]string{root}, []string{made, shared}, []string{setting})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Leftovers(); len(got) != 0 {
		t.Fatalf("Leftovers before the run = %q, want none", got)
	}

	// The run.
	for _, d := range []string{filepath.Join(root, "pods", "a"), filepath.Join(made, "pods", "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
	}
	// A mount stacked under another one.
	inner := filepath.Join(root, "pods", "a", "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(inner, unix.MNT_DETACH) })
	if err := os.Symlink(filepath.Join(root, "pods", "x.log"), filepath.Join(shared, "ours.log")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, setting, "1\n")

	left := s.Leftovers()
	for _, want := range []string{"mount " + inner, "mount " + filepath.Join(made, "pods", "b"), "path " + made,
		"new entry " + filepath.Join(shared, "ours.log"), "sysctl " + setting} {
		if !slices.ContainsFunc(left, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("Leftovers during the run = %q, missing %q", left, want)
		}
	}

	// As a later run does after this one was killed: from the file.
	saved := filepath.Join(base, "hoststate.json")
	if err := s.Save(saved); err != nil {
		t.Fatal(err)
	}
	if s, err = Load(saved); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	if left := s.Leftovers(); len(left) != 0 {
		t.Errorf("Leftovers after Restore = %q, want none", left)
	}
	if b, err := os.ReadFile(filepath.Join(shared, "someone-elses.log")); err != nil || string(b) != "keep" {
		t.Errorf("a file that was there before: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(setting); string(b) != "0\n" {
		t.Errorf("setting = %q after Restore, want it back at 0", b)
	}
}

// TestLeftoversReportsForeignEntries: a new entry in a directory that
// existed which is not the run's (a regular file) is reported and left in
// place by Restore.
func TestLeftoversReportsForeignEntries(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Take([]string{filepath.Join(base, "run")}, []string{shared}, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(shared, "foreign")
	mustWrite(t, foreign, "x")
	if err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("Restore removed an entry that is not the run's: %v", err)
	}
	if left := s.Leftovers(); !slices.Contains(left, "new entry "+foreign) {
		t.Errorf("Leftovers = %q, want the foreign entry reported", left)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("unescape = %q", got)
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
