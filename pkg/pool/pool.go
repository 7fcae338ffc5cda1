// Package pool owns the bytes of volumes: where a volume's directory lives,
// how it is made, and how it is removed, retained or archived. It is the only
// package that builds paths from volume IDs, and it checks each one.
package pool

import (
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
)

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
	// EnforcesSize reports whether writes past a volume's size fail.
	EnforcesSize() bool
	// Path returns the directory of volume id, whether or not it exists.
	Path(id string) (string, error)
	// Create makes the directory of volume id; an existing one is kept.
	Create(id string, perm Permissions) error
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
}
