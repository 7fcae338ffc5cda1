package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dirvol/dirvol/internal/copytree"

	"golang.org/x/sys/unix"
)

// copyJob is one tree copy into the pool: a snapshot of a volume, or a
// volume restored from a snapshot or cloned from a volume.
type copyJob struct {
	// what names the operation in errors and logs ("snapshot", "restore",
	// "clone").
	what string
	// src is the directory copied; missing is the error (wrapped) when
	// it does not exist.
	src     string
	missing error
	// dst is where the finished copy goes; stage is where it is made.
	dst, stage string
	// finish, when set, runs on the complete copy before it is renamed
	// into place.
	finish func(dir string) error
}

// copyIn makes job.dst a copy of job.src. The copy is made at job.stage and
// renamed to job.dst only when complete and on disk (syncfs), so that dst
// existing always means a complete copy. An existing dst is ErrExists.
func (d *Dir) copyIn(job copyJob) error {
	if _, err := os.Lstat(job.dst); err == nil {
		return fmt.Errorf("%s: %s: %w", job.what, job.dst, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", job.what, err)
	}
	if err := checkSource(job.src, job.missing); err != nil {
		return fmt.Errorf("%s: %w", job.what, err)
	}
	if !d.stageBegin(job.stage) {
		return fmt.Errorf("%s: %s is being made by another call: %w", job.what, job.dst, ErrExists)
	}
	defer d.stageEnd(job.stage)
	// NewDir made both parents; make them again in case an operator
	// removed one, so that a failure below is about the copy.
	for _, dir := range []string{filepath.Dir(job.stage), filepath.Dir(job.dst)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("%s: %w", job.what, err)
		}
	}
	// What an attempt interrupted by a crash left here is garbage: no
	// caller was told it succeeded.
	if err := os.RemoveAll(job.stage); err != nil {
		return fmt.Errorf("%s: remove an earlier partial copy: %w", job.what, err)
	}
	start := time.Now()
	st, err := copytree.Copy(job.src, job.stage)
	if err == nil && job.finish != nil {
		err = job.finish(job.stage)
	}
	if err == nil {
		err = syncFS(job.stage)
	}
	if err != nil {
		_ = os.RemoveAll(job.stage)
		if srcErr := checkSource(job.src, job.missing); srcErr != nil {
			err = srcErr // removed while it was being copied
		}
		return fmt.Errorf("%s of %s: %w", job.what, job.src, err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, job.stage, unix.AT_FDCWD, job.dst, unix.RENAME_NOREPLACE)
	if err != nil {
		_ = os.RemoveAll(job.stage)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("%s: %s: %w", job.what, job.dst, ErrExists)
		}
		return fmt.Errorf("%s: move copy into place: %w", job.what, err)
	}
	if err := syncDir(filepath.Dir(job.dst)); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(job.stage)); err != nil {
		return err
	}
	d.log.V(2).Info("Copied a volume tree", "operation", job.what, "from", job.src, "to", job.dst,
		"duration", time.Since(start), "files", st.Files, "bytes", st.Bytes, "reflinkedFiles", st.Reflinked,
		"copiedFiles", st.Copied, "dirs", st.Dirs, "symlinks", st.Symlinks, "hardLinks", st.HardLinks, "specialFiles", st.Specials)
	if st.XattrsSkipped > 0 || st.MountsSkipped > 0 {
		d.log.Info("Warning: the copy left out what this filesystem cannot hold or what is mounted inside the source",
			"operation", job.what, "from", job.src, "to", job.dst,
			"unsupportedXattrs", st.XattrsSkipped, "skippedMounts", st.MountsSkipped)
	}
	return nil
}

// checkSource returns nil when src is a directory, missing (wrapped) when it
// does not exist.
func checkSource(src string, missing error) error {
	fi, err := os.Lstat(src)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %w", src, missing)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", src)
	}
	return nil
}

// stageBegin claims a staging directory for a copy running in this process;
// it reports false when another copy holds it.
func (d *Dir) stageBegin(p string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.staging[p] {
		return false
	}
	d.staging[p] = true
	return true
}

func (d *Dir) stageEnd(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.staging, p)
}

// staged reports whether a copy in this process is using p.
func (d *Dir) staged(p string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.staging[p]
}

// syncFS flushes the filesystem holding p: one call makes a whole copied
// tree durable, where an fsync per file would cost a journal commit each.
func syncFS(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer closeQuietly(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", p, err)
	}
	return nil
}

// Reflinks reports whether copies in this pool share file data with their
// source (FICLONE works on the pool's filesystem), for the pool's startup
// log line.
func (d *Dir) Reflinks() (bool, error) { return copytree.CanReflink(d.stageVolumes) }

// createFrom makes volume id a copy of spec.FromSnapshot or spec.FromVolume.
func (d *Dir) createFrom(id string, spec VolumeSpec) error {
	dst, err := d.Path(id)
	if err != nil {
		return err
	}
	stage, err := within(d.stageVolumes, id)
	if err != nil {
		return err
	}
	job := copyJob{what: "clone", dst: dst, stage: stage, missing: ErrNotFound}
	if spec.FromSnapshot != "" {
		job.what, job.missing = "restore", ErrSnapshotNotFound
		job.src, err = within(d.snapshots, spec.FromSnapshot)
	} else {
		job.src, err = d.Path(spec.FromVolume)
	}
	if err != nil {
		return err
	}
	if spec.Block {
		job.finish = func(dir string) error {
			if err := markBlockVolume(dir); err != nil {
				return err
			}
			return growBlockFile(dir, spec.Bytes, false)
		}
	}
	return d.copyIn(job)
}
