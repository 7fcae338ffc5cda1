// Package disktree describes a directory tree so that tests can show that an
// operation changed nothing it does not own.
package disktree

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// Describe maps every entry under root (root itself included, as ".") to a
// line giving its type, permissions, owner, and the content hash of a file
// or the target of a link. Links are never followed.
func Describe(root string) (map[string]string, error) {
	out := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			desc += fmt.Sprintf(" uid=%d gid=%d", st.Uid, st.Gid)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p) //nolint:gosec // G122: test helper over trees the test itself made
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d bytes sha256=%x", len(data), sha256.Sum256(data))
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", root, err)
	}
	return out, nil
}

// Diff lists, one line each and sorted, the entries that disappeared,
// changed or appeared between two descriptions.
func Diff(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			out = append(out, fmt.Sprintf("%s disappeared (was %s)", k, v))
		} else if a != v {
			out = append(out, fmt.Sprintf("%s changed from %s to %s", k, v, a))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			out = append(out, fmt.Sprintf("%s appeared (%s)", k, v))
		}
	}
	sort.Strings(out)
	return out
}
