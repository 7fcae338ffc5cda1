package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Usage implements Pool by walking the directory. The walk uses Lstat, so it
// never follows links, stays on the volume's filesystem, and counts each
// hard-linked inode once.
func (d *Dir) Usage(id string) (Usage, error) {
	p, err := d.Path(id)
	if err != nil {
		return Usage{}, err
	}
	return walkUsage(p)
}

type inodeKey struct{ dev, ino uint64 }

func walkUsage(root string) (Usage, error) {
	rootInfo, err := os.Lstat(root)
	if errors.Is(err, os.ErrNotExist) {
		return Usage{}, fmt.Errorf("%s: %w", root, ErrNotFound)
	}
	if err != nil {
		return Usage{}, err
	}
	rootStat, ok := rootInfo.Sys().(*syscall.Stat_t)
	if !ok {
		return Usage{}, fmt.Errorf("%s: no stat information", root)
	}
	var u Usage
	seen := make(map[inodeKey]struct{})
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			// A file removed during the walk is not an error: usage is a
			// snapshot of a changing tree.
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != rootStat.Dev {
			// Something is mounted inside the volume; it is not the
			// volume's data.
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !e.IsDir() {
			k := inodeKey{dev: st.Dev, ino: st.Ino}
			if _, dup := seen[k]; dup {
				return nil
			}
			seen[k] = struct{}{}
		}
		u.Inodes++
		u.Bytes += st.Blocks * 512
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("measure %s: %w", root, err)
	}
	return u, nil
}
