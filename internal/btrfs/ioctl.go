// Package btrfs drives the btrfs operations dirvol needs (subvolumes,
// snapshots, quota groups, resize, transaction commit) through the kernel's
// ioctl interface.
//
// ioctls rather than the btrfs command: the usage of a volume is read on
// every NodeGetVolumeStats and every capacity refresh, once per volume, and
// a process per volume per minute does not scale to thousands of volumes;
// the ioctls also take file descriptors, so every operation is pinned to a
// directory opened without following links instead of a path a workload
// could redirect, and errors come back as errno values callers can test with
// errors.Is instead of text to parse. The ioctls used exist since Linux 5.7
// (deletion by subvolume ID is the newest). Everything here needs
// CAP_SYS_ADMIN, which the node plugin has.
package btrfs

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Layout constants from linux/btrfs.h and linux/btrfs_tree.h.
const (
	ioctlMagic = 0x94

	// firstFreeObjectID is the inode number of every subvolume's root
	// directory.
	firstFreeObjectID = 256

	rootTreeID  = 1
	quotaTreeID = 8

	rootItemKey       = 132
	rootRefKey        = 156
	qgroupStatusKey   = 240
	qgroupInfoKey     = 242
	qgroupLimitKey    = 244
	subvolReadOnly    = 1 << 1
	subvolSpecByID    = 1 << 4
	qgroupLimitMaxRfr = 1 << 0

	quotaCtlEnable       = 1
	quotaCtlEnableSimple = 4

	// Flags of struct btrfs_qgroup_status_item.
	qgroupStatusOn           = 1 << 0
	qgroupStatusRescan       = 1 << 1
	qgroupStatusInconsistent = 1 << 2
	qgroupStatusSimpleMode   = 1 << 3

	volNameMax    = 4087
	subvolNameMax = 4039
	searchBufSize = 4096 - int(unsafe.Sizeof(searchKey{}))
)

// Request numbers, built as the kernel's _IOC macro does:
// direction<<30 | size<<16 | magic<<8 | number.
const (
	iocWrite = 1 << 30
	iocRead  = 2 << 30

	iocResize       = iocWrite | unsafe.Sizeof(volArgs{})<<16 | ioctlMagic<<8 | 3
	iocTreeSearch   = iocRead | iocWrite | unsafe.Sizeof(searchArgs{})<<16 | ioctlMagic<<8 | 17
	iocInoLookup    = iocRead | iocWrite | unsafe.Sizeof(inoLookupArgs{})<<16 | ioctlMagic<<8 | 18
	iocDevInfo      = iocRead | iocWrite | unsafe.Sizeof(devInfoArgs{})<<16 | ioctlMagic<<8 | 30
	iocWaitSync     = iocWrite | 8<<16 | ioctlMagic<<8 | 22
	iocSnapCreateV2 = iocWrite | unsafe.Sizeof(volArgsV2{})<<16 | ioctlMagic<<8 | 23
	iocStartSync    = iocRead | 8<<16 | ioctlMagic<<8 | 24
	iocSubvolCreate = iocWrite | unsafe.Sizeof(volArgsV2{})<<16 | ioctlMagic<<8 | 24
	iocQuotaCtl     = iocRead | iocWrite | unsafe.Sizeof(quotaCtlArgs{})<<16 | ioctlMagic<<8 | 40
	iocQgroupCreate = iocWrite | unsafe.Sizeof(qgroupCreateArgs{})<<16 | ioctlMagic<<8 | 42
	iocQgroupLimit  = iocRead | unsafe.Sizeof(qgroupLimitArgs{})<<16 | ioctlMagic<<8 | 43
	iocQuotaRescan  = iocWrite | unsafe.Sizeof(quotaRescanArgs{})<<16 | ioctlMagic<<8 | 44
	iocRescanStatus = iocRead | unsafe.Sizeof(quotaRescanArgs{})<<16 | ioctlMagic<<8 | 45
	iocRescanWait   = ioctlMagic<<8 | 46
	iocSnapDestroy2 = iocWrite | unsafe.Sizeof(volArgsV2{})<<16 | ioctlMagic<<8 | 63
)

// volArgs is struct btrfs_ioctl_vol_args.
type volArgs struct {
	fd   int64
	name [volNameMax + 1]byte
}

// volArgsV2 is struct btrfs_ioctl_vol_args_v2; the name union also holds
// the subvolume ID when flags has subvolSpecByID.
type volArgsV2 struct {
	fd      int64
	transid uint64
	flags   uint64
	unused  [4]uint64
	name    [subvolNameMax + 1]byte
}

// devInfoArgs is struct btrfs_ioctl_dev_info_args.
type devInfoArgs struct {
	devID      uint64
	uuid       [16]byte
	bytesUsed  uint64
	totalBytes uint64
	fsid       [16]byte
	unused     [377]uint64
	path       [1024]byte
}

// inoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type inoLookupArgs struct {
	treeID   uint64
	objectID uint64
	name     [4080]byte
}

// searchKey is struct btrfs_ioctl_search_key.
type searchKey struct {
	treeID      uint64
	minObjectID uint64
	maxObjectID uint64
	minOffset   uint64
	maxOffset   uint64
	minTransID  uint64
	maxTransID  uint64
	minType     uint32
	maxType     uint32
	nrItems     uint32
	unused      uint32
	unused1     [4]uint64
}

// searchArgs is struct btrfs_ioctl_search_args.
type searchArgs struct {
	key searchKey
	buf [searchBufSize]byte
}

// searchHeader is struct btrfs_ioctl_search_header, in host byte order.
type searchHeader struct {
	_        uint64 // transid: unused, kept for the kernel layout
	objectID uint64
	offset   uint64
	typ      uint32
	len      uint32
}

// quotaCtlArgs is struct btrfs_ioctl_quota_ctl_args.
type quotaCtlArgs struct {
	cmd    uint64
	status uint64
}

// quotaRescanArgs is struct btrfs_ioctl_quota_rescan_args.
type quotaRescanArgs struct {
	flags    uint64
	progress uint64
	reserved [6]uint64
}

// qgroupCreateArgs is struct btrfs_ioctl_qgroup_create_args.
type qgroupCreateArgs struct {
	create   uint64
	qgroupID uint64
}

// qgroupLimitArgs is struct btrfs_ioctl_qgroup_limit_args.
type qgroupLimitArgs struct {
	qgroupID uint64
	flags    uint64
	maxRfer  uint64
	maxExcl  uint64
	rsvRfer  uint64
	rsvExcl  uint64
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// setName copies name into a fixed, NUL-terminated kernel buffer.
func setName(dst []byte, name string) error {
	if len(name) >= len(dst) || len(name) == 0 {
		return unix.ENAMETOOLONG
	}
	copy(dst, name)
	dst[len(name)] = 0
	return nil
}
