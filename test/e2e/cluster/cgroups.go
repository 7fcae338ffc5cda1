package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// cgroupRoot is the real node's --cgroup-root: a cgroup of its own in every
// cgroup v1 hierarchy (cgroupfs driver), so the kubelet's kubepods tree sits
// under it and the teardown removes exactly that, whatever else on the host
// uses kubepods.
type cgroupRoot struct {
	// Name is the kubelet's cgroupRoot, "/<name>".
	Name string
	dirs []string // one per hierarchy
}

// newCgroupRoot creates /<name> in every mounted cgroup v1 hierarchy. In
// cpuset a new cgroup starts with no CPUs and no memory nodes: it gets its
// parent's, as the kubelet's cgroup manager does for its own cgroups.
func newCgroupRoot(name string) (*cgroupRoot, error) {
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	if len(hierarchies) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy mounted (the real node runs the kubelet with the cgroupfs driver on cgroup v1)")
	}
	r := &cgroupRoot{Name: "/" + name}
	for _, h := range hierarchies {
		dir := filepath.Join(h, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			r.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		r.dirs = append(r.dirs, dir)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
			if err != nil {
				r.remove()
				return nil, fmt.Errorf("cgroup %s: copy %s from the parent: %w", dir, f, err)
			}
		}
	}
	return r, nil
}

// remove removes the cgroups under the root, deepest first, and the root.
// A cgroup goes only once its processes have exited, which after a kill
// takes a moment: it retries for a few seconds.
func (r *cgroupRoot) remove() error {
	var errs []error
	for _, dir := range r.dirs {
		var subdirs []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				subdirs = append(subdirs, p)
			}
			return nil
		})
		sort.Slice(subdirs, func(i, j int) bool { return strings.Count(subdirs[i], "/") > strings.Count(subdirs[j], "/") })
		for _, d := range subdirs {
			var err error
			for range 50 {
				if err = os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// left returns the root's cgroups that still exist.
func (r *cgroupRoot) left() []string {
	var out []string
	for _, d := range r.dirs {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// cgroupHierarchies returns the mount points of the cgroup v1 hierarchies.
func cgroupHierarchies() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, p := strings.Fields(pre), strings.Fields(post)
		if len(f) >= 5 && len(p) >= 1 && p[0] == "cgroup" {
			out = append(out, f[4])
		}
	}
	return out, nil
}
