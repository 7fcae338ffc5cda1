//go:build linux

package hoststate

import (
	"net"
	"os"
	"os/exec"
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

	// A shared path that does not exist yet: the run's containerd makes
	// it for its shims' sockets.
	sharedNew := filepath.Join(base, "run-containerd")
	// An owned path that exists, empty: the run may fill it.
	emptyOwned := filepath.Join(base, "var-lib-dirvol")
	if err := os.Mkdir(emptyOwned, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Take(Config{Roots: []string{root}, Owned: []string{made, emptyOwned}, Shared: []string{shared, sharedNew},
		Marks: []string{"mynet-"}, Sysctls: []string{setting}})
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
	mustWrite(t, filepath.Join(emptyOwned, "catalog"), "x")
	socket := filepath.Join(sharedNew, "s", "shim")
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the shim exited; its socket file stays
	cached := filepath.Join(shared, "results", "mynet-abc-eth0")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, cached, "{}")

	left := s.Leftovers()
	for _, want := range []string{"mount " + inner, "mount " + filepath.Join(made, "pods", "b"), "path " + made,
		"new entry " + filepath.Join(shared, "ours.log"), "new entry " + socket, "new entry " + cached, "new entry " + filepath.Join(emptyOwned, "catalog"), "sysctl " + setting} {
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
	if es, err := os.ReadDir(emptyOwned); err != nil || len(es) != 0 {
		t.Errorf("owned path that existed empty: %v, %v; want it there and empty", es, err)
	}
	if _, err := os.Lstat(sharedNew); !os.IsNotExist(err) {
		t.Errorf("shared path the run made: %v, want it removed", err)
	}
	if b, _ := os.ReadFile(setting); string(b) != "0\n" {
		t.Errorf("setting = %q after Restore, want it back at 0", b)
	}
}

// TestForeignEntriesLeftAlone: new entries under shared paths that are not
// the run's (a regular file, a socket someone listens on), in a directory
// that existed or one made during the run, are left in place by Restore
// and not counted as the run's leftovers.
func TestForeignEntriesLeftAlone(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "shared")
	sharedNew := filepath.Join(base, "shared-new")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Take(Config{Roots: []string{filepath.Join(base, "run")}, Shared: []string{shared, sharedNew}, Marks: []string{"mynet-"}})
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(shared, "foreign")
	mustWrite(t, foreign, "x")
	if err := os.Mkdir(sharedNew, 0o755); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(sharedNew, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{foreign, live} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("Restore removed %s, which is not the run's: %v", p, err)
		}
	}
	if left := s.Leftovers(); len(left) != 0 {
		t.Errorf("Leftovers = %q, want none of the foreign entries", left)
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

// TestTakeRefusesOwnedPathInUse: an owned path that exists with content
// belongs to something else: Take fails instead of letting the run use it
// (and later empty it).
func TestTakeRefusesOwnedPathInUse(t *testing.T) {
	base := t.TempDir()
	owned := filepath.Join(base, "var-lib-dirvol")
	if err := os.MkdirAll(owned, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(owned, "catalog"), "someone's")
	if _, err := Take(Config{Roots: []string{filepath.Join(base, "run")}, Owned: []string{owned}}); err == nil {
		t.Fatal("Take accepted an owned path with content")
	}
}

// TestLeftoversLoopDeviceOfGoneMount: a loop device the run attached to a
// file under its root through a bind mount that is gone since (a driver
// container's view of the pool) is reported, whether its file was deleted
// or not, although the kernel then reports the file's path from that
// mount's root, outside the run's paths. A device that existed before the
// run is not.
func TestLeftoversLoopDeviceOfGoneMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mounts need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup here")
	}
	for _, deleted := range []bool{false, true} {
		t.Run(map[bool]string{false: "file kept", true: "file deleted"}[deleted], func(t *testing.T) {
			base := t.TempDir()
			root, view := filepath.Join(base, "run"), filepath.Join(base, "container-view")
			for _, d := range []string{filepath.Join(root, "volumes"), view} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			before := attachVia(t, root, view, "before.img")
			s, err := Take(Config{Roots: []string{root}})
			if err != nil {
				t.Fatal(err)
			}
			during := attachVia(t, root, view, "block.img")
			if deleted {
				if err := os.Remove(filepath.Join(root, "volumes", "block.img")); err != nil {
					t.Fatal(err)
				}
			}
			left := strings.Join(s.Leftovers(), "\n")
			if !strings.Contains(left, "loop device "+during+" on /volumes/block.img") {
				t.Errorf("Leftovers() =\n%s\nwant %s on /volumes/block.img", left, during)
			}
			if strings.Contains(left, before+" ") {
				t.Errorf("Leftovers() =\n%s\nwant nothing of %s, attached before the run", left, before)
			}
		})
	}
}

// attachVia attaches root/volumes/name to a loop device through a bind
// mount of root at view, then detaches that mount (MNT_DETACH) and returns
// the device, which is detached when the test ends.
func attachVia(t *testing.T, root, view, name string) string {
	t.Helper()
	f := filepath.Join(root, "volumes", name)
	mustWrite(t, f, strings.Repeat("x", 1<<20))
	if err := unix.Mount(root, view, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", filepath.Join(view, "volumes", name)).Output()
	if uerr := unix.Unmount(view, unix.MNT_DETACH); uerr != nil {
		t.Errorf("unmount %s: %v", view, uerr)
	}
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if err := exec.Command("losetup", "--detach", dev).Run(); err != nil {
			t.Errorf("detach %s: %v", dev, err)
		}
	})
	return dev
}
