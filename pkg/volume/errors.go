package volume

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotFound means no volume has the given ID (or the ID is not one
	// this driver could have issued).
	ErrNotFound = errors.New("volume not found")
	// ErrSnapshotNotFound means no snapshot has the given ID (or the ID is
	// not one this driver could have issued).
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrSourceNotFound means the snapshot or volume a new volume is to be
	// made from is not in this node's catalog.
	ErrSourceNotFound = errors.New("content source not found on this node")
	// ErrSourceMismatch means a restore or clone asks for something its
	// source cannot give: another pool, or another access type.
	ErrSourceMismatch = errors.New("request does not match its content source")
	// ErrConflict means a volume or snapshot with the requested name exists
	// with different properties.
	ErrConflict = errors.New("exists with different properties")
	// ErrOutOfRange means a size is outside what the volume can have: a
	// restore smaller than its source, or an expansion that would shrink.
	ErrOutOfRange = errors.New("size out of range")
	// ErrNoSpace means the pool cannot promise the requested size.
	ErrNoSpace = errors.New("not enough space in pool")
	// ErrUnknownPool means a request names a pool that is not configured
	// on this node: the request (its StorageClass) is wrong for this node.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrPoolNotConfigured means an existing volume or snapshot is in a
	// pool this start of the driver was not given: nothing is wrong with
	// the request, and nothing was changed; the node must be started with
	// that pool again.
	ErrPoolNotConfigured = errors.New("pool not configured at this start")
	// ErrBusy means the volume or snapshot is in the middle of another
	// operation.
	ErrBusy = errors.New("busy with another operation")
	// ErrInUse means a volume's data is still mounted on this node (it is
	// published), or a loop device is still attached to its block file, so
	// it cannot be deleted.
	ErrInUse = errors.New("volume is still mounted on this node")
	// ErrNotReady means recovery has not finished.
	ErrNotReady = errors.New("volume catalog is still being recovered")
)

// poolErr marks a pool failure caused by a full filesystem or a btrfs limit
// (a copy into a dir pool, a block file grown past the free space) as
// ErrNoSpace, so the CO is told "resource exhausted", which it retries or
// reschedules, instead of an internal error.
func poolErr(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// poolGone says that what (a volume or snapshot) is in a pool this start was
// not given, and what to do about it.
func poolGone(what, poolName string) error {
	return fmt.Errorf("%s is in pool %q, which is not configured on this node; start the driver with --pool name=%s,path=... again, then retry: %w",
		what, poolName, poolName, ErrPoolNotConfigured)
}
