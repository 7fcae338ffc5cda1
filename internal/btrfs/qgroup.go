package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnableQuota turns on quota groups on fd's filesystem. Enabling them
// where they are on already does nothing. On a filesystem that holds data,
// btrfs then rescans it in the background; figures read before the rescan
// ends are too low.
func EnableQuota(fd int) error {
	args := &quotaCtlArgs{cmd: quotaCtlEnable}
	if err := ioctl(fd, iocQuotaCtl, unsafe.Pointer(args)); err != nil {
		return fmt.Errorf("enable btrfs quota groups: %w", err)
	}
	return nil
}

// QuotaEnabled reports whether quota groups are on for fd's filesystem.
func QuotaEnabled(fd int) (bool, error) {
	_, err := search(fd, quotaTreeID, 0, qgroupStatusKey, 0, 0)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil // no quota tree
	}
	return false, fmt.Errorf("read quota status: %w", err)
}

// SetLimit limits the bytes that subvolume id's quota group may reference.
// Writes that would take the subvolume past the limit fail with EDQUOT.
func SetLimit(fd int, id, bytes uint64) error {
	args := &qgroupLimitArgs{qgroupID: id, flags: qgroupLimitMaxRfr, maxRfer: bytes}
	if err := ioctl(fd, iocQgroupLimit, unsafe.Pointer(args)); err != nil {
		return fmt.Errorf("set quota limit of subvolume %d to %d bytes: %w", id, bytes, err)
	}
	return nil
}

// ClearLimit removes the referenced-bytes limit of subvolume id's quota
// group.
func ClearLimit(fd int, id uint64) error {
	// The kernel reads a limit of all ones as "no limit".
	args := &qgroupLimitArgs{qgroupID: id, flags: qgroupLimitMaxRfr, maxRfer: math.MaxUint64}
	if err := ioctl(fd, iocQgroupLimit, unsafe.Pointer(args)); err != nil {
		return fmt.Errorf("clear quota limit of subvolume %d: %w", id, err)
	}
	return nil
}

// Limit returns the referenced-bytes limit of subvolume id's quota group;
// ok is false when none is set.
func Limit(fd int, id uint64) (bytes uint64, ok bool, err error) {
	data, err := qgroupItem(fd, qgroupLimitKey, id)
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	// struct btrfs_qgroup_limit_item: flags, max_rfer, max_excl, rsv_rfer,
	// rsv_excl, little-endian.
	if len(data) < 16 {
		return 0, false, fmt.Errorf("quota limit item of subvolume %d is %d bytes", id, len(data))
	}
	if binary.LittleEndian.Uint64(data)&qgroupLimitMaxRfr == 0 {
		return 0, false, nil
	}
	return binary.LittleEndian.Uint64(data[8:]), true, nil
}

// Usage is what a quota group accounts.
type Usage struct {
	// Referenced is every byte the subvolume's files point to, shared
	// with snapshots or not: what the limit applies to.
	Referenced uint64
	// Exclusive is what deleting the subvolume would free.
	Exclusive uint64
}

// QgroupUsage returns the usage of subvolume id's quota group as of the
// last transaction commit (btrfs updates quota groups when it commits, at
// most every 30 seconds by default). ENOENT means there is no such group.
func QgroupUsage(fd int, id uint64) (Usage, error) {
	data, err := qgroupItem(fd, qgroupInfoKey, id)
	if err != nil {
		return Usage{}, err
	}
	// struct btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl,
	// excl_cmpr, little-endian.
	if len(data) < 40 {
		return Usage{}, fmt.Errorf("quota info item of subvolume %d is %d bytes", id, len(data))
	}
	return Usage{
		Referenced: binary.LittleEndian.Uint64(data[8:]),
		Exclusive:  binary.LittleEndian.Uint64(data[24:]),
	}, nil
}

func qgroupItem(fd int, key uint32, id uint64) ([]byte, error) {
	items, err := search(fd, quotaTreeID, 0, key, id, id)
	if errors.Is(err, unix.ENOENT) {
		// No quota tree: quotas are off.
		return nil, fmt.Errorf("quota group of subvolume %d: quotas are not enabled: %w", id, unix.ENOENT)
	}
	if err != nil {
		return nil, fmt.Errorf("read quota group of subvolume %d: %w", id, err)
	}
	for _, it := range items {
		if it.offset == id {
			return it.data, nil
		}
	}
	return nil, fmt.Errorf("quota group of subvolume %d: %w", id, unix.ENOENT)
}

// DestroyQgroup removes subvolume id's quota group. While the subvolume's
// root item exists (btrfs is still freeing a deleted subvolume's blocks)
// this fails with EBUSY. Once the root item is gone the kernel removes the
// group whatever it still accounts, and if that is not zero (the commit
// that accounts the last freed blocks has not happened yet) it marks every
// group of the filesystem inconsistent: callers commit first and check
// that QgroupUsage is zero. Newer kernels remove an emptied group
// themselves. A group already gone is not an error.
func DestroyQgroup(fd int, id uint64) error {
	args := &qgroupCreateArgs{create: 0, qgroupID: id}
	err := ioctl(fd, iocQgroupCreate, unsafe.Pointer(args))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy quota group 0/%d: %w", id, err)
	}
	return nil
}

// Qgroups lists the level-0 quota groups (one per subvolume, past or
// present) of fd's filesystem.
func Qgroups(fd int) ([]uint64, error) {
	items, err := search(fd, quotaTreeID, 0, qgroupInfoKey, 0, math.MaxUint64)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list quota groups: %w", err)
	}
	var ids []uint64
	for _, it := range items {
		if it.offset>>48 == 0 { // level 0: a subvolume's own group
			ids = append(ids, it.offset)
		}
	}
	return ids, nil
}
