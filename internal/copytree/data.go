package copytree

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// copyData fills the new, empty file dfd with the size bytes of sfd.
func (c *copier) copyData(dfd, sfd int, size int64) error {
	if !c.noClone {
		err := unix.IoctlFileClone(dfd, sfd)
		if err == nil {
			c.stats.Reflinked++
			return nil
		}
		if !cloneUnsupported(err) {
			return fmt.Errorf("clone data: %w", err)
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTTY) {
			c.noClone = true // a property of the filesystems, not of the file
		}
	}
	if err := unix.Ftruncate(dfd, size); err != nil {
		return fmt.Errorf("set length: %w", err)
	}
	for off := int64(0); off < size; {
		start, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if errors.Is(err, unix.EINVAL) {
			// No SEEK_DATA here: copy everything.
			if err := c.copyRange(dfd, sfd, off, size-off); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("find data: %w", err)
		}
		end, err := unix.Seek(sfd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("find hole: %w", err)
		}
		if end > size {
			end = size // the file grew since it was measured
		}
		if end <= start {
			break
		}
		if err := c.copyRange(dfd, sfd, start, end-start); err != nil {
			return err
		}
		off = end
	}
	c.stats.Copied++
	return nil
}

// cloneUnsupported reports whether a FICLONE failure means "copy instead".
func cloneUnsupported(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// copyRange copies n bytes at off from sfd to the same place in dfd. It
// stops early, without error, when the source is shorter than expected
// because it was truncated during the copy.
func (c *copier) copyRange(dfd, sfd int, off, n int64) error {
	soff, doff := off, off
	for n > 0 && !c.noCopyRange {
		chunk := int(min(n, 1<<30))
		w, err := unix.CopyFileRange(sfd, &soff, dfd, &doff, chunk, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			c.noCopyRange = true
		case err != nil:
			return fmt.Errorf("copy data: %w", err)
		case w == 0:
			return nil
		default:
			n -= int64(w)
		}
	}
	if n <= 0 {
		return nil
	}
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	for n > 0 {
		r, err := unix.Pread(sfd, c.buf[:min(n, int64(len(c.buf)))], soff)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		if r == 0 {
			return nil
		}
		for done := 0; done < r; {
			w, err := unix.Pwrite(dfd, c.buf[done:r], doff)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("write data: %w", err)
			}
			done += w
			doff += int64(w)
		}
		soff += int64(r)
		n -= int64(r)
	}
	return nil
}
