//go:build linux

package node

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// checkTarget refuses a target path that is one of the driver's own
// directories (a pool root, the data directory with the catalog and image
// pool mount points), lies inside one or contains one. Publishing there
// would hide the catalog or other volumes behind a mount, or let a pod
// write into the catalog; unpublishing there would remove the driver's own
// (empty) directories. The target itself may hold no symbolic link
// (openTarget refuses them), so comparing it as it is with the resolved
// directories is exact; a directory reached through another mount of the
// same filesystem is caught by inode as the target is opened
// (checkOpenedTarget).
func (s *Server) checkTarget(target string) error {
	for _, d := range s.protected() {
		r := resolve(d.path)
		if mount.PathWithinBase(target, r) || mount.PathWithinBase(r, target) {
			return status.Errorf(codes.InvalidArgument,
				"target_path %s overlaps the dirvol %s at %s; targets are kubelet's pod directories, never the driver's own", target, d.what, d.path)
		}
	}
	return nil
}

// protectedDir is a directory no target may overlap, and what it is.
type protectedDir struct{ what, path string }

// protected lists the pool roots, then the configured directories.
func (s *Server) protected() []protectedDir {
	var out []protectedDir
	for _, root := range s.vols.Roots() {
		out = append(out, protectedDir{"pool", root})
	}
	for _, p := range s.cfg.Protected {
		out = append(out, protectedDir{"data directory", p})
	}
	return out
}

// checkOpenedTarget refuses an opened target that is, or lies in, one of
// the protected directories by identity: the same directory reached through
// another mount of its filesystem, which checkTarget cannot see in the path.
func (s *Server) checkOpenedTarget(t *openedTarget) error {
	for _, d := range s.protected() {
		var st unix.Stat_t
		if err := unix.Stat(d.path, &st); err != nil {
			continue
		}
		hit := t.file != nil && sameInode(&t.st, &st)
		for i := range t.dirs {
			hit = hit || sameInode(&t.dirs[i], &st)
		}
		if hit {
			return status.Errorf(codes.InvalidArgument,
				"target_path %s is, or is in, the dirvol %s at %s (reached through another mount); targets are kubelet's pod directories, never the driver's own", t.path, d.what, d.path)
		}
	}
	return nil
}

// resolve returns p with symbolic links resolved in its longest existing
// prefix; the missing rest is appended as it is.
func resolve(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, fs.ErrNotExist) || parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
