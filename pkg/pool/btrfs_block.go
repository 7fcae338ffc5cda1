package pool

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// blockMarker is an extended attribute set on the root directory of a
// block volume's subvolume. It lets Expand tell the two kinds apart without
// guessing from content a workload controls: the "trusted." namespace can
// be written only with CAP_SYS_ADMIN. Snapshots, restores and clones carry
// it over with the rest of the subvolume.
const blockMarker = "trusted.dirvol.block"

// isBlockVolume reports whether the subvolume open as fd carries the
// block marker.
func isBlockVolume(fd int) (bool, error) {
	_, err := unix.Fgetxattr(fd, blockMarker, nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENODATA):
		return false, nil
	}
	return false, fmt.Errorf("read block marker: %w", err)
}

// fsNoCOWFlag is FS_NOCOW_FL from linux/fs.h.
const fsNoCOWFlag = 0x00800000

// setNoCOW makes files created later in the directory open as fd NOCOW.
// It is an optimisation only, so failures are ignored.
func setNoCOW(fd int) {
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return
	}
	_ = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsNoCOWFlag))
}
