package node

import (
	"fmt"
	"os"

	mount "k8s.io/mount-utils"
)

// fakeBinder records bind mounts in a fake mounter's table, at the path the
// opened target has (read back through /proc, as the kernel would resolve
// it), with the options mount-utils would have used ("bind" first). What a
// target shows is the device of the last mount at its path.
type fakeBinder struct {
	mounter *mount.FakeMounter
	// bindErr, when set, fails every Bind.
	bindErr error
}

var _ binder = fakeBinder{}

func fdPath(f *os.File) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
}

func (b fakeBinder) Bind(source string, target *os.File, flags []string) error {
	if _, err := mountAttr(flags); err != nil {
		return err
	}
	if b.bindErr != nil {
		return b.bindErr
	}
	path, err := fdPath(target)
	if err != nil {
		return err
	}
	return b.mounter.Mount(source, path, "", append([]string{"bind"}, flags...))
}

func (b fakeBinder) Shows(target *os.File, source string) (bool, error) {
	path, err := fdPath(target)
	if err != nil {
		return false, err
	}
	top, ok := b.top(path)
	return ok && top.Device == source, nil
}

func (b fakeBinder) top(path string) (mount.MountPoint, bool) {
	mps, _ := b.mounter.List()
	var top mount.MountPoint
	found := false
	for _, mp := range mps {
		if mp.Path == path {
			top, found = mp, true
		}
	}
	return top, found
}

// Unmount takes off the topmost mount at the target's path only: the fake
// mounter's Unmount takes every one, so those below are put back.
func (b fakeBinder) Unmount(target *os.File) error {
	path, err := fdPath(target)
	if err != nil {
		return err
	}
	mps, _ := b.mounter.List()
	var below []mount.MountPoint
	for _, mp := range mps {
		if mp.Path == path {
			below = append(below, mp)
		}
	}
	if len(below) == 0 {
		return fmt.Errorf("unmount %s: not a mount point", path)
	}
	if err := b.mounter.Unmount(path); err != nil {
		return err
	}
	for _, mp := range below[:len(below)-1] {
		if err := b.mounter.Mount(mp.Device, mp.Path, mp.Type, mp.Opts); err != nil {
			return err
		}
	}
	return nil
}
