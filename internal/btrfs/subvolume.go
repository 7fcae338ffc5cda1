package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IsSubvolume reports whether the directory open as fd is the root of a
// subvolume: every subvolume's root directory has inode number 256, and no
// other directory on btrfs has.
func IsSubvolume(fd int) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Ino == firstFreeObjectID, nil
}

// SubvolumeID returns the ID of the subvolume that holds fd. The ID is also
// the subvolume's level-0 quota group ID.
func SubvolumeID(fd int) (uint64, error) {
	args := &inoLookupArgs{objectID: firstFreeObjectID}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(args)); err != nil {
		return 0, fmt.Errorf("look up subvolume ID: %w", err)
	}
	return args.treeID, nil
}

// CreateSubvolume makes an empty subvolume called name in the directory
// open as dirfd. An existing name fails with EEXIST.
func CreateSubvolume(dirfd int, name string) error {
	args := &volArgsV2{}
	if err := setName(args.name[:], name); err != nil {
		return err
	}
	return ioctl(dirfd, iocSubvolCreate, unsafe.Pointer(args))
}

// Snapshot makes name in the directory open as dirfd a snapshot of the
// subvolume open as srcfd. The snapshot appears whole or not at all, and
// btrfs commits the transaction that makes it before returning. An existing
// name fails with EEXIST; a source that is not a subvolume root with EINVAL.
func Snapshot(srcfd, dirfd int, name string, readOnly bool) error {
	args := &volArgsV2{fd: int64(srcfd)}
	if readOnly {
		args.flags = subvolReadOnly
	}
	if err := setName(args.name[:], name); err != nil {
		return err
	}
	return ioctl(dirfd, iocSnapCreateV2, unsafe.Pointer(args))
}

// DeleteSubvolume deletes subvolume id, which must be on the filesystem of
// fd, and every subvolume nested in it (deepest first), whether read-only
// or not: a workload may have made subvolumes and read-only snapshots inside
// its volume, and btrfs refuses to delete a subvolume that holds another.
// The directory entries go at once; btrfs frees the blocks in the
// background. It returns the IDs it deleted, so that the caller can drop
// their quota groups. A subvolume already gone is not an error.
func DeleteSubvolume(fd int, id uint64) ([]uint64, error) {
	return deleteTree(fd, id, 0)
}

// maxNesting bounds the recursion; path length limits make deeper nesting
// impossible in practice.
const maxNesting = 1000

func deleteTree(fd int, id uint64, depth int) ([]uint64, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("subvolume %d: nested more than %d deep", id, maxNesting)
	}
	children, err := ChildSubvolumes(fd, id)
	if err != nil {
		return nil, err
	}
	var deleted []uint64
	for _, c := range children {
		d, err := deleteTree(fd, c, depth+1)
		deleted = append(deleted, d...)
		if err != nil {
			return deleted, err
		}
	}
	args := &volArgsV2{flags: subvolSpecByID}
	binary.NativeEndian.PutUint64(args.name[:8], id)
	err = ioctl(fd, iocSnapDestroy2, unsafe.Pointer(args))
	if errors.Is(err, unix.ENOENT) {
		return deleted, nil
	}
	if err != nil {
		return deleted, fmt.Errorf("delete subvolume %d: %w", id, err)
	}
	return append(deleted, id), nil
}

// ChildSubvolumes lists the subvolumes whose directory entry lies in
// subvolume id (one level down).
func ChildSubvolumes(fd int, id uint64) ([]uint64, error) {
	items, err := search(fd, rootTreeID, id, rootRefKey, 0, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("list subvolumes inside %d: %w", id, err)
	}
	ids := make([]uint64, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.offset)
	}
	return ids, nil
}

// SubvolumeExists reports whether subvolume id still has a root item. A
// deleted subvolume keeps it until btrfs has freed its blocks, so this is
// also how to wait for a deletion to finish.
func SubvolumeExists(fd int, id uint64) (bool, error) {
	items, err := search(fd, rootTreeID, id, rootItemKey, 0, math.MaxUint64)
	if err != nil {
		return false, fmt.Errorf("look up subvolume %d: %w", id, err)
	}
	return len(items) > 0, nil
}
