package btrfs

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IsBtrfs reports whether path is on a btrfs filesystem.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// Commit commits the running transaction of fd's filesystem and waits for
// it: what was changed before becomes durable (new and deleted subvolumes,
// quota limits) without flushing every file's dirty data as syncfs would.
func Commit(fd int) error {
	var transid uint64
	if err := ioctl(fd, iocStartSync, unsafe.Pointer(&transid)); err != nil {
		return fmt.Errorf("start btrfs transaction commit: %w", err)
	}
	if err := ioctl(fd, iocWaitSync, unsafe.Pointer(&transid)); err != nil {
		return fmt.Errorf("wait for btrfs transaction %d: %w", transid, err)
	}
	return nil
}

// DeviceSize returns the bytes of device devid that fd's filesystem uses:
// its size as the filesystem knows it, which lags the device after the
// device grew, until a resize. A single-device filesystem's device is 1.
func DeviceSize(fd int, devid uint64) (uint64, error) {
	args := &devInfoArgs{devID: devid}
	if err := ioctl(fd, iocDevInfo, unsafe.Pointer(args)); err != nil {
		return 0, fmt.Errorf("read the size of btrfs device %d: %w", devid, err)
	}
	return args.totalBytes, nil
}

// MinResize is the least size the kernel resizes a btrfs device to; a
// smaller size is EINVAL.
const MinResize = 256 << 20

// ResizeMax grows the filesystem of fd (a single-device btrfs) to the
// whole of its device, as `btrfs filesystem resize max` does. A filesystem
// that already fills its device is left as it is.
func ResizeMax(fd int) error {
	args := &volArgs{}
	if err := setName(args.name[:], "max"); err != nil {
		return err
	}
	if err := ioctl(fd, iocResize, unsafe.Pointer(args)); err != nil {
		return fmt.Errorf("resize btrfs to its device: %w", err)
	}
	return nil
}
