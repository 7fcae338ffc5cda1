//go:build linux

package catalog

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fsNoCOWFlag is FS_NOCOW_FL from linux/fs.h.
const fsNoCOWFlag = 0x00800000

// prepareInPlace makes the record files created later in dir rewritable in
// place, and says why not when they cannot be. On btrfs, which copies a
// file's data on write, a rewrite in place needs free space unless the file
// is NOCOW, which files inherit from their directory; elsewhere (ext4, XFS,
// tmpfs) an overwrite reuses the file's blocks.
func prepareInPlace(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("cannot tell the filesystem of %s: %w", dir, err)
	}
	if st.Type != unix.BTRFS_SUPER_MAGIC {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err == nil && flags&fsNoCOWFlag == 0 {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsNoCOWFlag))
		if err == nil {
			flags, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("%s is on btrfs and cannot be made NOCOW: %w", dir, err)
	case flags&fsNoCOWFlag == 0:
		return fmt.Errorf("%s is on btrfs and did not keep the NOCOW attribute", dir)
	}
	return nil
}
