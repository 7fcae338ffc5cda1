package node

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
	mount "k8s.io/mount-utils"
)

// TestMain points TMPDIR at a directory of its own, so that every
// t.TempDir of this package is under it, and checks after the tests that
// no loop device is attached to a file there and nothing is mounted there:
// a leak fails the package even when the test that caused it passed. What
// it finds is then released, so that the machine is left clean.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := os.MkdirTemp("", "dirvol-node-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	if err := os.Setenv("TMPDIR", root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if os.Geteuid() != 0 {
		return code
	}
	if leaks := releaseUnder(root); len(leaks) > 0 {
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "LEAK:", l)
		}
		return 1
	}
	return code
}

// releaseUnder unmounts what is mounted under root and detaches the loop
// devices of files under root, and says what it found.
func releaseUnder(root string) []string {
	var found []string
	mounter := mount.New("")
	if mps, err := mounter.List(); err == nil {
		for i := len(mps) - 1; i >= 0; i-- {
			if mount.PathWithinBase(mps[i].Path, root) {
				found = append(found, fmt.Sprintf("%s is still mounted", mps[i].Path))
				_ = mounter.Unmount(mps[i].Path)
			}
		}
	} else {
		found = append(found, fmt.Sprintf("cannot read the mount table: %v", err))
	}
	loops := loopdev.New()
	// A detach the kernel deferred (autoclear) completes when the program
	// that had the device open closes it; give it a moment.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		devs, err := loops.List()
		if err != nil || !slices.ContainsFunc(devs, func(d loopdev.Device) bool {
			return d.Autoclear && mount.PathWithinBase(d.BackingFile, root)
		}) {
			break
		}
	}
	if devs, err := loops.List(); err == nil {
		for _, d := range devs {
			if mount.PathWithinBase(d.BackingFile, root) {
				found = append(found, fmt.Sprintf("%s is still attached to %s", d.Path, d.BackingFile))
				_ = loops.Detach(d.Path)
			}
		}
	} else if _, statErr := os.Stat("/dev/loop-control"); statErr == nil {
		found = append(found, fmt.Sprintf("cannot list loop devices: %v", err))
	}
	return found
}
