package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// retainNoteName is the note's file name. It carries the volume ID so that it
// cannot be mistaken for, or overwrite, a file the workload made.
func retainNoteName(id string) string { return ".dirvol-retained-" + id + ".json" }

// Retain implements Pool. The note is written relative to a descriptor of the
// volume directory opened with O_NOFOLLOW, and the note itself is created
// with O_EXCL after unlinking whatever held its name, so a symbolic or hard
// link the workload planted at either place is not followed out of the volume.
func (d *Dir) Retain(id string, note RetainNote) error {
	p, err := d.Path(id)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(note, "", "  ")
	if err != nil {
		return fmt.Errorf("encode retain note: %w", err)
	}
	dirfd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("retain %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	dir := os.NewFile(uintptr(dirfd), p)
	defer dir.Close()

	name := retainNoteName(id)
	// Whatever sits at the note's name (an earlier note, or a symbolic or
	// hard link the workload planted) is unlinked, never written through, and
	// the note is created afresh.
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s/%s: %w", p, name, err)
	}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0o644)
	if err != nil {
		return fmt.Errorf("write retain note in %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("write retain note in %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync retain note in %s: %w", p, err)
	}
	return dir.Sync()
}
