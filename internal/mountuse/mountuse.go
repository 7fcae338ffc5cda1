// Package mountuse tells where a volume's data is in use on this node, as
// the kernel's mount table and loop devices say: the bind mounts of a
// directory, and for a file the loop devices attached to it, with their
// bind mounts. The volume core asks it before it removes a volume, so that
// data is never deleted under a live mount or an attached device; it reads
// and changes nothing else.
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

// MountedAt returns where path is in use: for a directory, the places it
// is bind-mounted (mount references by device and root in
// /proc/self/mountinfo, so an alias path does not hide one); for a block
// volume's file, the places where a loop device attached to it is
// bind-mounted, and each attached device that is mounted nowhere. Such a
// device still reads and writes the file (a detach that failed or that the
// kernel deferred while something holds the device open, a device a
// previous run of the driver attached), so the file is in use until it is
// detached. A path that does not exist is in use nowhere.
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
		if len(r) == 0 {
			r = []string{unmountedDevice(d)}
		}
		refs = append(refs, r...)
	}
	return refs, nil
}

// unmountedDevice describes, for messages, a loop device attached to a
// volume's file and mounted nowhere.
func unmountedDevice(d loopdev.Device) string {
	if d.Autoclear {
		return fmt.Sprintf("loop device %s (mounted nowhere but held open; the kernel detaches it when its last user closes it)", d.Path)
	}
	return fmt.Sprintf("loop device %s (mounted nowhere; the node service detaches it)", d.Path)
}
