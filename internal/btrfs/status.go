package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// QuotaMode says how a filesystem accounts quota groups.
type QuotaMode int

const (
	// QuotaOff: no quota tree; nothing is accounted or limited.
	QuotaOff QuotaMode = iota
	// QuotaFull is classic quota groups: every extent is accounted to
	// every subvolume that references it, by walking backrefs at each
	// transaction commit. The figures can become inconsistent.
	QuotaFull
	// QuotaSimple is simple quotas (Linux 6.7+): an extent is accounted
	// to the subvolume that wrote it, for as long as it exists. The
	// figures are never inconsistent.
	QuotaSimple
)

func (m QuotaMode) String() string {
	switch m {
	case QuotaFull:
		return "qgroup"
	case QuotaSimple:
		return "squota"
	}
	return "off"
}

// QuotaStatus is the filesystem's quota status item, as of the last
// transaction commit (btrfs writes the item when it commits).
type QuotaStatus struct {
	Mode QuotaMode
	// Inconsistent means the kernel no longer trusts its own figures:
	// usage reads wrong and limits are not applied as set, until a rescan
	// finishes.
	Inconsistent bool
	// Rescanning means a rescan is running; figures are incomplete until
	// it ends.
	Rescanning bool
	// Generation is the transaction the figures were last made
	// consistent in.
	Generation uint64
}

// Trusted reports whether limits are enforced as set and usage figures
// are right.
func (s QuotaStatus) Trusted() bool {
	return s.Mode != QuotaOff && !s.Inconsistent && !s.Rescanning
}

// String names what is wrong, or "consistent".
func (s QuotaStatus) String() string {
	switch {
	case s.Mode == QuotaOff:
		return "quotas off"
	case s.Inconsistent && s.Rescanning:
		return s.Mode.String() + " inconsistent, rescan running"
	case s.Inconsistent:
		return s.Mode.String() + " inconsistent"
	case s.Rescanning:
		return s.Mode.String() + " rescan running"
	}
	return s.Mode.String() + " consistent"
}

// ReadQuotaStatus reads the quota status item of fd's filesystem: one tree
// search, cheap enough to run on every check. The kernel sets the
// inconsistent flag in memory at once and writes it at the next commit;
// callers that must see the latest state Commit first.
func ReadQuotaStatus(fd int) (QuotaStatus, error) {
	items, err := search(fd, quotaTreeID, 0, qgroupStatusKey, 0, 0)
	if errors.Is(err, unix.ENOENT) {
		return QuotaStatus{Mode: QuotaOff}, nil // no quota tree
	}
	if err != nil {
		return QuotaStatus{}, fmt.Errorf("read quota status: %w", err)
	}
	if len(items) == 0 {
		return QuotaStatus{Mode: QuotaOff}, nil
	}
	// struct btrfs_qgroup_status_item: version, generation, flags,
	// rescan (progress), enable_gen (simple quotas only), little-endian.
	data := items[0].data
	if len(data) < 32 {
		return QuotaStatus{}, fmt.Errorf("quota status item is %d bytes", len(data))
	}
	flags := binary.LittleEndian.Uint64(data[16:])
	if flags&qgroupStatusOn == 0 {
		return QuotaStatus{Mode: QuotaOff}, nil
	}
	s := QuotaStatus{
		Mode:         QuotaFull,
		Inconsistent: flags&qgroupStatusInconsistent != 0,
		Rescanning:   flags&qgroupStatusRescan != 0,
		Generation:   binary.LittleEndian.Uint64(data[8:]),
	}
	if flags&qgroupStatusSimpleMode != 0 {
		s.Mode = QuotaSimple
	}
	return s, nil
}

// EnableSimpleQuota turns on simple quotas on fd's filesystem (Linux 6.7+;
// older kernels answer EINVAL). Like EnableQuota, it does nothing where
// quotas are on already, whatever their mode.
func EnableSimpleQuota(fd int) error {
	args := &quotaCtlArgs{cmd: quotaCtlEnableSimple}
	if err := ioctl(fd, iocQuotaCtl, unsafe.Pointer(args)); err != nil {
		return fmt.Errorf("enable btrfs simple quotas: %w", err)
	}
	return nil
}

// StartRescan starts a rescan of every quota group of fd's filesystem,
// which recounts them from the extent tree and clears the inconsistent
// flag when it ends. A rescan already running is not an error. Simple
// quotas, which are never inconsistent, cannot be rescanned (EINVAL).
func StartRescan(fd int) error {
	args := &quotaRescanArgs{}
	err := ioctl(fd, iocQuotaRescan, unsafe.Pointer(args))
	if errors.Is(err, unix.EINPROGRESS) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start quota rescan: %w", err)
	}
	return nil
}

// RescanRunning reports whether a quota rescan is running on fd's
// filesystem. It asks the kernel, not the status item, so it does not lag
// a commit behind.
func RescanRunning(fd int) (bool, error) {
	args := &quotaRescanArgs{}
	if err := ioctl(fd, iocRescanStatus, unsafe.Pointer(args)); err != nil {
		return false, fmt.Errorf("read quota rescan status: %w", err)
	}
	return args.flags != 0, nil
}
