package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dirvol/dirvol/internal/btrfs"
	"github.com/dirvol/dirvol/internal/loopdev"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// ErrImageShrink means an image pool's size= is smaller than its image.
var ErrImageShrink = errors.New("image pools cannot shrink")

// ErrNotMounted means an image pool's filesystem is not mounted at the
// pool's path any more.
var ErrNotMounted = errors.New("image pool is not mounted")

// LoopDevices is what an image pool needs of loop devices: which ones a
// file backs, and telling one that its file grew. *loopdev.Loops is the
// real thing.
type LoopDevices interface {
	Find(file string) ([]loopdev.Device, error)
	Refresh(path string) (int64, error)
}

var _ LoopDevices = (*loopdev.Loops)(nil)

// openImage opens image pool spec: a btrfs filesystem in the file
// spec.Image, loop-mounted at spec.Path.
//
// If spec.Path already has that image mounted (a driver restart), it is
// used as it is. Otherwise the image is made ready and mounted with the
// "loop" option, which also frees the loop device when it is unmounted. The
// driver never unmounts a pool that started: after a restart it finds it
// mounted, and pods may still use volumes in it. A start that fails after
// mounting the image unmounts it again, so that nothing is left mounted. The
// image is formatted only when the driver creates it, or when it holds
// nothing at all (every byte zero, as after truncate); an image holding
// another filesystem, or any data without a btrfs signature, is
// ErrWrongFilesystem and left untouched. An image smaller than spec.Size is
// grown, and the filesystem with it; a larger one is ErrImageShrink.
func openImage(ctx context.Context, spec Spec, deps Deps) (*Btrfs, error) {
	logger := klog.FromContext(ctx).WithValues("pool", spec.Name, "image", spec.Image)
	if deps.Mounter == nil || deps.Exec == nil || deps.Loops == nil {
		return nil, fmt.Errorf("pool %q: an image pool needs a mounter, an exec and loop devices", spec.Name)
	}
	fail := func(err error) (*Btrfs, error) {
		return nil, fmt.Errorf("pool %q: image %s: %w", spec.Name, spec.Image, err)
	}
	if err := os.MkdirAll(spec.Path, 0o711); err != nil {
		return fail(err)
	}
	mnt, err := filepath.EvalSymlinks(spec.Path)
	if err != nil {
		return fail(err)
	}
	device, err := mountedAt(deps.Mounter, mnt)
	if err != nil {
		return fail(err)
	}
	if device != "" {
		same, err := loopBacks(deps.Loops, device, spec.Image)
		if err != nil {
			return fail(err)
		}
		if !same {
			return fail(fmt.Errorf("%s has %s mounted on it, not this image; unmount it or give the pool another path=", mnt, device))
		}
		grown, err := growImage(spec.Image, spec.Size)
		if err != nil {
			return fail(err)
		}
		if grown {
			// The loop device keeps the size it had when attached.
			if _, err := deps.Loops.Refresh(device); err != nil {
				return fail(err)
			}
		}
		logger.Info("Image pool already mounted", "path", mnt, "device", device, "grown", grown)
		b, err := startImage(spec, mnt, logger)
		if err != nil {
			return fail(err)
		}
		return b, nil
	}
	formatted, err := prepareImage(ctx, spec.Image, spec.Size, deps.Exec)
	if err != nil {
		return fail(err)
	}
	if formatted {
		logger.Info("Formatted a new btrfs image", "sizeBytes", spec.Size)
	}
	if err := deps.Mounter.Mount(spec.Image, mnt, "btrfs", []string{"loop"}); err != nil {
		return fail(fmt.Errorf("mount at %s: %w", mnt, err))
	}
	logger.Info("Mounted image pool", "path", mnt)
	b, err := startImage(spec, mnt, logger)
	if err != nil {
		// Mounted by this call and serving nothing yet: leave nothing
		// mounted (the "loop" option frees the device with the mount).
		if uerr := deps.Mounter.Unmount(mnt); uerr != nil {
			return fail(fmt.Errorf("%w (unmounting it again failed too: %w)", err, uerr))
		}
		logger.Info("Unmounted the image after a failed start", "path", mnt)
		return fail(err)
	}
	return b, nil
}

// startImage opens the btrfs pool on the image mounted at mnt. The
// filesystem grows to a grown image here, and after a crash between growing
// the file and this; otherwise nothing is resized.
func startImage(spec Spec, mnt string, logger klog.Logger) (*Btrfs, error) {
	err := withDirFD(mnt, func(fd int) error {
		fi, err := os.Stat(spec.Image)
		if err != nil {
			return err
		}
		return growFilesystem(fd, fi.Size())
	})
	if err != nil {
		return nil, err
	}
	b, err := NewBtrfs(spec.Name, mnt, WithLogger(logger))
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", mnt, err)
	}
	b.image = &imageMount{image: spec.Image, fsid: st.Fsid}
	return b, nil
}

// growFilesystem grows the btrfs filesystem open as fd to the whole of its
// device, imageBytes long, when it is smaller. The kernel resizes to no less
// than 256 MiB, so a filesystem that already fills its device is left alone
// (a 128 MiB image must start), and one that cannot reach its device says
// what size to give.
func growFilesystem(fd int, imageBytes int64) error {
	have, err := btrfs.DeviceSize(fd, 1)
	if err != nil {
		return err
	}
	if have >= uint64(imageBytes) {
		return nil
	}
	if imageBytes < btrfs.MinResize {
		return fmt.Errorf("the image grew from %d to %d bytes, but btrfs grows a filesystem only to %d bytes (256Mi) or more; give size= at least 256Mi: %w",
			have, imageBytes, btrfs.MinResize, ErrWrongFilesystem)
	}
	return btrfs.ResizeMax(fd)
}

// imageMount identifies the filesystem an image pool mounted at its root,
// so that the pool can tell it from the directory under the mount point
// when the image is not mounted (an operator's umount): its filesystem ID,
// which btrfs derives from the filesystem's UUID and keeps across mounts.
type imageMount struct {
	image string
	fsid  unix.Fsid
}

// checkMounted returns ErrNotMounted when the pool is an image pool whose
// filesystem is not the one mounted at its root.
func (b *Btrfs) checkMounted() error {
	if b.image == nil {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(b.Root(), &st); err != nil {
		return fmt.Errorf("pool %q: statfs %s: %w", b.Name(), b.Root(), err)
	}
	if st.Type != unix.BTRFS_SUPER_MAGIC || st.Fsid != b.image.fsid {
		return fmt.Errorf("pool %q: image %s is not mounted at %s (%s is there); restart the driver to mount it again: %w",
			b.Name(), b.image.image, b.Root(), fsName(int64(st.Type)), ErrNotMounted) //nolint:unconvert // Type is int32 on some platforms
	}
	return nil
}

// mountedAt returns the device mounted on top at mnt, or "".
func mountedAt(m mount.Interface, mnt string) (string, error) {
	mps, err := m.List()
	if err != nil {
		return "", fmt.Errorf("list mounts: %w", err)
	}
	device := ""
	for _, mp := range mps {
		if mp.Path == mnt {
			device = mp.Device // a later entry is mounted over an earlier one
		}
	}
	return device, nil
}

// loopBacks reports whether device is a loop device backed by image; the
// loop devices compare the backing file's identity, not its path.
func loopBacks(loops LoopDevices, device, image string) (bool, error) {
	if !strings.HasPrefix(device, "/dev/loop") {
		return false, nil
	}
	if _, err := os.Stat(image); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	devs, err := loops.Find(image)
	if err != nil {
		return false, err
	}
	for _, d := range devs {
		if d.Name() == filepath.Base(device) {
			return true, nil
		}
	}
	return false, nil
}

// prepareImage makes image a btrfs filesystem of at least size bytes,
// formatting it only when it is new or holds nothing. It reports whether it
// formatted.
func prepareImage(ctx context.Context, image string, size int64, ex utilexec.Interface) (bool, error) {
	fi, err := os.Stat(image)
	if errors.Is(err, os.ErrNotExist) {
		return true, createImage(ctx, image, size, ex)
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("not a regular file (%s); an image pool needs a file: %w", fi.Mode().Type(), ErrWrongFilesystem)
	}
	if size < fi.Size() {
		return false, shrinkError(fi.Size(), size)
	}
	isBtrfs, err := hasBtrfsMagic(image)
	if err != nil {
		return false, err
	}
	formatted := false
	if !isBtrfs {
		empty, err := allZero(image)
		if err != nil {
			return false, err
		}
		if !empty {
			what := probe(ctx, image, ex)
			return false, fmt.Errorf("holds %s, not btrfs; dirvol formats only new or empty images, so move it away or give the pool another image=: %w", what, ErrWrongFilesystem)
		}
		// Every byte is zero: nothing to lose (e.g. made by truncate).
		if err := mkfs(ctx, image, ex); err != nil {
			return false, err
		}
		formatted = true
	}
	if _, err := growImage(image, size); err != nil {
		return false, err
	}
	return formatted, nil
}

func shrinkError(have, want int64) error {
	return fmt.Errorf("the image is %d bytes and size= asks for %d; restore size= to at least %d: %w", have, want, have, ErrImageShrink)
}

// createImage makes a sparse file of size bytes formatted btrfs at image.
// It is made under a temporary name and renamed into place once formatted
// and on disk, so that image existing means a formatted image: a crash
// leaves at most the temporary file, which the next attempt replaces.
func createImage(ctx context.Context, image string, size int64, ex utilexec.Interface) error {
	if err := os.MkdirAll(filepath.Dir(image), 0o700); err != nil {
		return err
	}
	tmp := image + ".dirvol-new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if magic, err := fsMagic(filepath.Dir(image)); err == nil && magic == unix.BTRFS_SUPER_MAGIC {
		// A loop device's filesystem on a copy-on-write file fragments
		// it without end; the flag only takes while the file is empty.
		setNoCOW(int(f.Fd()))
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = mkfs(ctx, tmp, ex)
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, image, unix.RENAME_NOREPLACE)
	}
	if err == nil {
		return syncDir(filepath.Dir(image))
	}
	_ = os.Remove(tmp)
	return fmt.Errorf("create image: %w", err)
}

// mkfs formats file btrfs. Without -f, mkfs.btrfs itself refuses a file
// that holds a filesystem: a second guard against formatting data.
func mkfs(ctx context.Context, file string, ex utilexec.Interface) error {
	out, err := ex.CommandContext(ctx, "mkfs.btrfs", "-q", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.btrfs %s: %w: %s", file, err, bytes.TrimSpace(out))
	}
	return nil
}

// growImage lengthens image to size bytes when it is shorter, and reports
// whether it did. A longer image is ErrImageShrink.
func growImage(image string, size int64) (bool, error) {
	f, err := os.OpenFile(image, os.O_WRONLY, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	switch {
	case size < fi.Size():
		return false, shrinkError(fi.Size(), size)
	case size == fi.Size():
		return false, nil
	}
	if err := f.Truncate(size); err != nil {
		return false, fmt.Errorf("grow to %d bytes: %w", size, err)
	}
	return true, f.Sync()
}

// btrfsMagic and its offset: the primary superblock starts at 64 KiB and
// holds the magic 64 bytes in.
const (
	btrfsMagic       = "_BHRfS_M"
	btrfsMagicOffset = 0x10040
)

func hasBtrfsMagic(image string) (bool, error) {
	f, err := os.Open(image)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, len(btrfsMagic))
	_, err = f.ReadAt(buf, btrfsMagicOffset)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(buf) == btrfsMagic, nil
}

// allZero reports whether every byte of file is zero. Only the parts that
// hold data are read (SEEK_DATA skips holes), so a sparse image costs
// nothing.
func allZero(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, 1<<20)
	var off int64
	for {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return true, nil // no data past off
		}
		if err != nil {
			return false, fmt.Errorf("seek data: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return false, fmt.Errorf("seek hole: %w", err)
		}
		for pos := start; pos < end; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			for _, c := range buf[:n] {
				if c != 0 {
					return false, nil
				}
			}
			if errors.Is(err, io.EOF) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			pos += int64(n)
		}
		off = end
	}
}

// probe names what blkid finds in file, for the message refusing it.
func probe(ctx context.Context, file string, ex utilexec.Interface) string {
	out, err := ex.CommandContext(ctx, "blkid", "-p", "-o", "export", file).Output()
	if err != nil {
		return "data without a btrfs signature"
	}
	var typ, usage string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE", "PTTYPE":
			if typ == "" {
				typ = v
			}
		case "USAGE":
			usage = v
		}
	}
	switch {
	case typ == "":
		return "data without a btrfs signature"
	case usage == "filesystem":
		return "a " + typ + " filesystem"
	}
	return typ + " data"
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
