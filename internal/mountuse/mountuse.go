// Package mountuse tells where a volume's data is mounted on this node, as
// the kernel's mount table and loop devices say: the bind mounts of a
// directory, and the bind mounts of the loop devices attached to a file.
// The volume core asks it before it removes a volume, so that data is never
// deleted under a live mount; it reads and changes nothing else.
package mountuse

import (
	"fmt"

	"github.com/dirvol/dirvol/internal/loopdev"
	mount "k8s.io/mount-utils"
)

// Loops is what Checker needs of the loop devices: *loopdev.Loops.
type Loops interface {
	Find(file string) ([]loopdev.Device, error)
	BindMounts(path string) ([]string, error)
}

// Checker finds the mounts that use a directory or a file.
type Checker struct {
	mounter mount.Interface
	loops   Loops
}

// New returns a Checker reading mounter's table and loops.
func New(mounter mount.Interface, loops Loops) *Checker {
	return &Checker{mounter: mounter, loops: loops}
}

// MountedAt returns the mount points that show path: for a directory, the
// places it is bind-mounted (mount references by device and root in
// /proc/self/mountinfo, so an alias path does not hide one); for a block
// volume's file, the places where a loop device attached to it is
// bind-mounted. A path that does not exist is mounted nowhere.
func (c *Checker) MountedAt(path string, block bool) ([]string, error) {
	if !block {
		refs, err := c.mounter.GetMountRefs(path)
		if err != nil {
			return nil, fmt.Errorf("find the mounts of %s: %w", path, err)
		}
		return refs, nil
	}
	devs, err := c.loops.Find(path)
	if err != nil {
		return nil, fmt.Errorf("find the loop devices of %s: %w", path, err)
	}
	var refs []string
	for _, d := range devs {
		r, err := c.loops.BindMounts(d.Path)
		if err != nil {
			return nil, fmt.Errorf("find the mounts of %s (attached to %s): %w", d.Path, path, err)
		}
		refs = append(refs, r...)
	}
	return refs, nil
}
