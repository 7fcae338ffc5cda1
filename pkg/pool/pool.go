// Package pool owns the bytes of volumes: where a volume's directory lives,
// how it is made, and how it is removed, retained or archived. It is the only
// package that builds paths from volume IDs, and it checks each one.
package pool

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound means the volume's directory does not exist.
	ErrNotFound = errors.New("volume directory not found")
	// ErrInvalidName means a name cannot be used as a single path element.
	ErrInvalidName = errors.New("invalid name for a path element")
	// ErrExists means a destination already exists and was not replaced.
	ErrExists = errors.New("destination already exists")
	// ErrSnapshotNotFound means a snapshot's directory does not exist.
	ErrSnapshotNotFound = errors.New("snapshot not found in pool")
	// ErrUnsupported means the pool's backend cannot do what was asked.
	ErrUnsupported = errors.New("not supported by this pool's backend")
)

// BlockFile is the name of the sparse file that holds a block volume's
// bytes inside the volume's directory. Keeping block volumes in a directory
// lets delete, retain, archive and snapshots treat both kinds alike.
const BlockFile = "block.img"

// VolumeSpec says what Create makes.
type VolumeSpec struct {
	// Bytes is the volume's size: the enforced limit on pools that enforce
	// sizes, and the length of a block volume's file on every pool.
	Bytes int64
	// Block makes a block volume: the directory holds one sparse file,
	// BlockFile, of Bytes bytes, and nothing else.
	Block bool
	// Perm applies to the volume's root directory.
	Perm Permissions
	// FromSnapshot, when set, is a snapshot of this pool whose content the
	// new volume starts with (restore).
	FromSnapshot string
	// FromVolume, when set, is a volume of this pool whose content the new
	// volume starts with (clone). At most one of the two is set.
	FromVolume string
}

// Usage is what a volume's directory holds.
type Usage struct {
	// Bytes is the space allocated to the files (st_blocks*512), each inode
	// counted once however many hard links it has.
	Bytes int64
	// Inodes is the number of files, directories and links.
	Inodes int64
}

// FS describes the filesystem under a pool.
type FS struct {
	// AvailableBytes is what an unprivileged writer can still allocate.
	AvailableBytes int64
	// TotalBytes is the filesystem's size.
	TotalBytes int64
	// TotalInodes and FreeInodes are 0 where the filesystem has no fixed count.
	TotalInodes int64
	FreeInodes  int64
}

// Permissions applies to a new volume's root directory.
type Permissions struct {
	Mode uint32
	// UID and GID are -1 to leave ownership as created.
	UID, GID int
}

// RetainNote is written into a retained volume so that whoever finds the
// directory later knows which PersistentVolume it was.
type RetainNote struct {
	VolumeID     string    `json:"volumeID"`
	Name         string    `json:"name"`
	PVName       string    `json:"pvName,omitempty"`
	PVCNamespace string    `json:"pvcNamespace,omitempty"`
	PVCName      string    `json:"pvcName,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	RetainedAt   time.Time `json:"retainedAt"`
}

// Pool is a named place on the node that holds volume directories. Every
// method taking an id validates it as a single path element and fails with
// ErrInvalidName otherwise; every method is idempotent, so that recovery can
// replay an interrupted operation.
type Pool interface {
	// Name is the pool's name as given on the command line.
	Name() string
	// Root is the pool's root directory.
	Root() string
	// Backend names the implementation ("dir").
	Backend() string
	// EnforcesSize reports whether writes past a volume's size fail, as
	// of the last Check.
	EnforcesSize() bool
	// Check re-reads, cheaply, what the pool's promises rest on and
	// repairs what it can (btrfs: the quota status, repaired by a
	// rescan). It returns nil while the pool keeps its promises, else
	// ErrSizesNotEnforced saying why; SizeProblem then returns the same
	// until a later Check finds it fixed. Callers run it periodically.
	Check(ctx context.Context) error
	// SizeProblem returns, without I/O, why a pool whose backend enforces
	// sizes did not enforce them at the last check; nil when it did, and
	// always for a pool that never promised to.
	SizeProblem() error
	// Path returns the directory of volume id, whether or not it exists.
	Path(id string) (string, error)
	// Create makes volume id as spec says. Without a source an existing
	// directory is kept; with one, an existing directory is ErrExists
	// (IDs are fresh, so it can only be the debris of a crash, which
	// recovery removes).
	Create(id string, spec VolumeSpec) error
	// Expand grows volume id to bytes: the enforced limit where there is
	// one, and the block file of a block volume. It never shrinks anything;
	// callers compare sizes first.
	Expand(id string, bytes int64) error
	// BlockPath returns the path of block volume id's file.
	BlockPath(id string) (string, error)
	// Exists reports whether the directory of volume id exists.
	Exists(id string) (bool, error)
	// Remove deletes the directory of volume id and everything under it
	// without following symbolic links; a missing directory is not an error.
	Remove(id string) error
	// Retain leaves the directory in place and writes note into it.
	Retain(id string, note RetainNote) error
	// Archive moves the directory of volume id to archive/<dest>. It
	// succeeds without doing anything when the move already happened.
	Archive(id, dest string) error
	// ArchiveTaken reports whether archive/<dest> already exists.
	ArchiveTaken(dest string) (bool, error)
	// Usage measures what the directory of volume id holds.
	Usage(id string) (Usage, error)
	// Stat describes the filesystem under the pool.
	Stat() (FS, error)
	// Writable returns nil when new volumes can be made.
	Writable() error
	// Scan lists the volume directories present, and separately those that
	// hold a retain note, so that recovery can report directories no record
	// owns.
	Scan() (dirs []string, retained []string, err error)
	// PurgeTrash finishes removals interrupted by a crash.
	PurgeTrash() error

	// Snapshot makes snapshot snapID, a point-in-time copy of volume volID
	// kept under the pool's snapshots/ directory, independent of the
	// volume afterwards (deleting either leaves the other intact). An
	// existing snapshot directory is ErrExists; a missing volume ErrNotFound.
	Snapshot(volID, snapID string) error
	// SnapshotExists reports whether snapshot snapID's directory exists.
	SnapshotExists(snapID string) (bool, error)
	// RemoveSnapshot deletes snapshot snapID without following symbolic
	// links; a missing snapshot is not an error.
	RemoveSnapshot(snapID string) error
	// ScanSnapshots lists the snapshot directories present, so recovery can
	// report those no record owns.
	ScanSnapshots() ([]string, error)
}
