package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dirvol/dirvol/test/e2e/hoststate"
)

// TestRemoveStaleRealNode: after a run killed before its teardown, the next
// run's cleanup kills what it left running (a process in its cgroups, one
// naming its run directory), removes its cgroups, and unmounts and removes
// what it made, from the state it saved; and does none of that while a real
// node holds the lock.
func TestRemoveStaleRealNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups and mounts need root")
	}
	if hs, err := cgroupHierarchies(); err != nil || len(hs) == 0 {
		t.Skip("no cgroup v1 hierarchy")
	}
	base := t.TempDir()
	dir := filepath.Join(base, fmt.Sprintf("dirvol-e2e-stale-%d", time.Now().UnixNano()))
	owned := filepath.Join(base, "var-lib-kubelet")
	lock := filepath.Join(base, "real-node.lock")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host, err := hoststate.Take(hoststate.Config{Roots: []string{dir}, Owned: []string{owned}})
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Save(filepath.Join(dir, hostStateFile)); err != nil {
		t.Fatal(err)
	}

	// What the killed run left: a mount under a path it made, its cgroups
	// with a process in them, a process that names its directory.
	mnt := filepath.Join(owned, "pods", "x")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	cg, err := newCgroupRoot(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.remove() })
	inCgroup := exec.Command("sleep", "1000")
	if err := inCgroup.Start(); err != nil {
		t.Fatal(err)
	}
	for _, d := range cg.dirs {
		pod := filepath.Join(d, "kubepods", "pod1")
		if err := os.MkdirAll(pod, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				for _, sub := range []string{filepath.Join(d, "kubepods"), pod} {
					_ = os.WriteFile(filepath.Join(sub, f), b, 0o644)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(pod, "cgroup.procs"), []byte(strconv.Itoa(inCgroup.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move a process into %s: %v", pod, err)
		}
	}
	marker := filepath.Join(dir, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	naming := exec.Command("tail", "-f", marker)
	if err := naming.Start(); err != nil {
		t.Fatal(err)
	}
	exited := func(cmd *exec.Cmd) chan error {
		ch := make(chan error, 1)
		go func() { ch <- cmd.Wait() }()
		return ch
	}
	inCgroupDone, namingDone := exited(inCgroup), exited(naming)
	t.Cleanup(func() {
		_ = inCgroup.Process.Kill()
		_ = naming.Process.Kill()
	})

	// A real node holds the lock: nothing happens.
	unlock, err := lockFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	if err := RemoveStaleRealNode(dir, lock); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Fatalf("cleanup ran while the lock was held: %v", err)
	}
	select {
	case <-namingDone:
		t.Fatal("cleanup killed a process while the lock was held")
	default:
	}
	unlock()

	if err := RemoveStaleRealNode(dir, lock); err != nil {
		t.Fatal(err)
	}
	for name, done := range map[string]chan error{"the process in the run's cgroups": inCgroupDone, "the process naming the run dir": namingDone} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s still runs", name)
		}
	}
	if left := cg.left(); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	if left := host.Leftovers(); len(left) > 0 {
		t.Errorf("left on the host: %v", left)
	}
}
