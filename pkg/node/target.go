package node

import (
	"errors"
	"io/fs"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// checkTarget refuses a target path that is a pool root, lies inside one or
// contains one. Publishing there would hide the catalog or other volumes
// behind a mount, and unpublishing there would remove the driver's own
// (empty) directories, since unpublish removes the empty target it is
// given. Symbolic links in the path are resolved first, so a link cannot
// lead into a pool.
func (s *Server) checkTarget(target string) error {
	t := resolve(target)
	for _, root := range s.vols.Roots() {
		r := resolve(root)
		if mount.PathWithinBase(t, r) || mount.PathWithinBase(r, t) {
			return status.Errorf(codes.InvalidArgument,
				"target_path %s overlaps the dirvol pool at %s; targets are kubelet's pod directories, never the driver's own", target, root)
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
