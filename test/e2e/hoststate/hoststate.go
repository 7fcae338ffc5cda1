//go:build linux

// Package hoststate records what a real node (kubelet, containerd, CNI)
// changes on the host outside the run's own directory, puts it back after
// the run, and lists whatever is left: mounts, paths the run created, new
// entries in directories that existed, kernel settings, loop devices.
//
// The kubelet and containerd write to fixed places whatever their
// configuration says (kubelet.sock under /var/lib/kubelet/device-plugins,
// /var/log/containers symlinks, shim sockets under /run/containerd/s, the
// CNI result cache under /var/lib/cni) and the kubelet sets vm and kernel
// sysctls at start. A Snapshot taken before the node starts says which of
// those existed and what they held, so Restore removes only what the run
// made.
package hoststate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Snapshot is the host's state before a run: which of the paths it was
// taken of existed and, under the shared ones, every entry; the values of
// the sysctls; and the run's own roots (directories whose whole content,
// mounts included, belongs to the run).
type Snapshot struct {
	roots  []string
	owned  []string // the run's alone while it runs (under a lock): removed whole if it made them
	shared []string // others may use them at the same time: only the run's entries are removed
	marks  []string
	// existed: the owned and shared paths that existed; before: every
	// path at or under a shared path that existed.
	existed map[string]bool
	before  map[string]bool
	sysctls map[string]string // /proc/sys path -> value
	// loops: the loop devices attached at Take (loopKey); fsDevs: the
	// filesystems (st_dev) of the roots, owned and shared paths, or of
	// their nearest existing parent.
	loops  map[string]bool
	fsDevs []uint64
}

// Config says what a Snapshot is taken of.
type Config struct {
	// Roots are the run's own directories.
	Roots []string
	// Owned are paths no one else uses while the run holds them (the
	// kubelet's root dir, under the real nodes' lock). Each must be absent
	// or an empty directory: Take fails otherwise.
	Owned []string
	// Shared are paths other programs may write to at the same time
	// (/run/containerd, /var/log/containers).
	Shared []string
	// Marks are name prefixes that make a new entry under a shared path
	// the run's (the CNI network's name, which libcni's cache files start
	// with).
	Marks []string
	// Sysctls are paths under /proc/sys.
	Sysctls []string
}

// Take records the host's state.
func Take(c Config) (*Snapshot, error) {
	s := &Snapshot{roots: clean(c.Roots), owned: clean(c.Owned), shared: clean(c.Shared), marks: c.Marks,
		existed: map[string]bool{}, before: map[string]bool{}, sysctls: map[string]string{}, loops: map[string]bool{}}
	for _, d := range loopDevices() {
		s.loops[d.key()] = true
	}
	for _, p := range append(append(append([]string{}, s.roots...), s.owned...), s.shared...) {
		if dev, ok := fsOf(p); ok && !slices.Contains(s.fsDevs, dev) {
			s.fsDevs = append(s.fsDevs, dev)
		}
	}
	sysctls := c.Sysctls
	for _, p := range append(append([]string{}, s.owned...), s.shared...) {
		_, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.existed[p] = true
	}
	for _, p := range s.owned {
		if !s.existed[p] {
			continue
		}
		if es, err := os.ReadDir(p); err != nil || len(es) > 0 {
			return nil, fmt.Errorf("%s exists and is not an empty directory (err %v): in use by something else, or left by a run that was killed; remove it when nothing uses it", p, err)
		}
	}
	for _, p := range s.shared {
		if s.existed[p] {
			for _, e := range walk(p) {
				s.before[e] = true
			}
		}
	}
	for _, k := range sysctls {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		s.sysctls[k] = string(b)
	}
	return s, nil
}

// Restore puts the host back: unmounts everything under the roots and the
// owned paths (deepest first), removes the owned paths the run created and
// empties those that existed (empty);
// under the shared paths, removes the new entries that are the run's
// (symlinks into a root, sockets nobody listens on, then directories left
// empty, the shared path itself included if the run made it); writes the
// sysctls back. It returns what it could not do; Leftovers then says what
// remains.
func (s *Snapshot) Restore() error {
	var errs []error
	if err := UnmountUnder(append(append([]string{}, s.roots...), s.owned...)...); err != nil {
		errs = append(errs, err)
	}
	for _, p := range s.createdOwned() {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range s.owned {
		if !s.existed[p] {
			continue
		}
		// It was empty: everything in it is the run's.
		es, _ := os.ReadDir(p)
		for _, e := range es {
			if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, root := range s.shared {
		entries := walk(root)
		for i := len(entries) - 1; i >= 0; i-- { // children before their directory
			p := entries[i]
			if s.before[p] {
				continue
			}
			if s.isRuns(p) || emptyDir(p) {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	for k, v := range s.sysctls {
		if b, err := os.ReadFile(k); err == nil && string(b) == v {
			continue
		}
		if err := os.WriteFile(k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// saved is a Snapshot as Save writes it.
type saved struct {
	Roots   []string          `json:"roots"`
	Owned   []string          `json:"owned"`
	Shared  []string          `json:"shared"`
	Marks   []string          `json:"marks"`
	Existed map[string]bool   `json:"existed"`
	Before  map[string]bool   `json:"before"`
	Sysctls map[string]string `json:"sysctls"`
	Loops   map[string]bool   `json:"loops"`
	FSDevs  []uint64          `json:"fsDevs"`
}

// Save writes the snapshot to path, so that a later run can Restore the
// host after this one was killed before it could.
func (s *Snapshot) Save(path string) error {
	b, err := json.Marshal(saved{s.roots, s.owned, s.shared, s.marks, s.existed, s.before, s.sysctls, s.loops, s.fsDevs})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Load reads a snapshot written by Save.
func Load(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v saved
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Snapshot{roots: v.Roots, owned: v.Owned, shared: v.Shared, marks: v.Marks, existed: v.Existed, before: v.Before, sysctls: v.Sysctls,
		loops: v.Loops, fsDevs: v.FSDevs}, nil
}

// createdOwned returns the owned paths that did not exist at Take and do
// now.
func (s *Snapshot) createdOwned() []string {
	var out []string
	for _, p := range s.owned {
		if s.existed[p] {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// isRuns reports whether a new entry under a shared path is the run's: a
// name with one of the marks, a symlink into one of the roots (the
// kubelet's /var/log/containers links into its pod logs directory), or a
// socket no one listens on (a containerd shim's, after the shim exited).
func (s *Snapshot) isRuns(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	for _, m := range s.marks {
		if strings.HasPrefix(filepath.Base(p), m) {
			return true
		}
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		return err == nil && under(target, s.roots)
	case fi.Mode()&fs.ModeSocket != 0:
		conn, err := net.DialTimeout("unix", p, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
	}
	return false
}

// Leftovers lists what the run left on the host: mounts under the roots or
// the recorded paths, owned paths that did not exist before, new entries
// under the shared paths that are the run's (as Restore decides: foreign
// ones are neither removed nor reported, since another program may be
// using them) or empty directories, changed sysctls, and loop devices whose
// backing file is under a root or a recorded path, or, for a device
// attached since Take, whose backing file was on the filesystem of one of
// those and can no longer be reached by the path the kernel reports: a
// file deleted while attached, or attached through a mount that is gone
// (a container's bind mount of /var/lib/dirvol: the kernel then reports the
// path from that mount's root, /volumes/...). The roots themselves are the
// caller's to remove (or keep, for a look at the logs).
func (s *Snapshot) Leftovers() []string {
	var out []string
	watched := append(append(append([]string{}, s.roots...), s.owned...), s.shared...)
	mounts, err := Mounts()
	if err != nil {
		out = append(out, "cannot read mounts: "+err.Error())
	}
	for _, m := range mounts {
		if under(m, watched) {
			out = append(out, "mount "+m)
		}
	}
	for _, p := range s.createdOwned() {
		out = append(out, "path "+p+" (did not exist before)")
	}
	for _, p := range s.owned {
		if s.existed[p] {
			es, _ := os.ReadDir(p)
			for _, e := range es {
				out = append(out, "new entry "+filepath.Join(p, e.Name())+" (the directory was empty)")
			}
		}
	}
	for _, root := range s.shared {
		for _, p := range walk(root) {
			if !s.before[p] && (s.isRuns(p) || emptyDir(p)) {
				out = append(out, "new entry "+p)
			}
		}
	}
	for k, v := range s.sysctls {
		if b, err := os.ReadFile(k); err != nil || string(b) != v {
			out = append(out, fmt.Sprintf("sysctl %s = %q, was %q", k, strings.TrimSpace(string(b)), strings.TrimSpace(v)))
		}
	}
	for _, d := range loopDevices() {
		switch {
		case under(d.backing, watched):
			out = append(out, fmt.Sprintf("loop device /dev/%s on %s", d.name, d.backing))
		case !s.loops[d.key()] && slices.Contains(s.fsDevs, d.dev) && !d.reachable():
			out = append(out, fmt.Sprintf("loop device /dev/%s on %s (inode %d of device %d:%d, where the run's paths are; attached during the run, and its file is deleted or was reached through a mount that is gone)",
				d.name, d.reported(), d.ino, unix.Major(d.dev), unix.Minor(d.dev)))
		}
	}
	sort.Strings(out)
	return out
}

// UnmountUnder unmounts every mount at or under the given directories,
// deepest first (mounts stacked on one point: the top one first). A mount
// that stays busy is detached lazily, and reported.
func UnmountUnder(dirs ...string) error {
	dirs = clean(dirs)
	var errs []error
	for attempt := 0; ; attempt++ {
		mounts, err := Mounts()
		if err != nil {
			return err
		}
		var todo []string
		for i := len(mounts) - 1; i >= 0; i-- { // mountinfo lists parents first
			if under(mounts[i], dirs) {
				todo = append(todo, mounts[i])
			}
		}
		if len(todo) == 0 {
			return errors.Join(errs...)
		}
		sort.SliceStable(todo, func(i, j int) bool { return depth(todo[i]) > depth(todo[j]) })
		for _, m := range todo {
			err := unix.Unmount(m, 0)
			switch {
			case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			case attempt < 20:
				// EBUSY while a process still exits: try again.
			default:
				if derr := unix.Unmount(m, unix.MNT_DETACH); derr == nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w (detached lazily)", m, err))
				} else {
					errs = append(errs, fmt.Errorf("unmount %s: %w", m, derr))
				}
			}
		}
		if attempt >= 21 {
			return errors.Join(errs...)
		}
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Mounts returns the mount points of this process's mount namespace, in
// mountinfo order (a mount after its parent), with octal escapes decoded.
func Mounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		out = append(out, unescape(f[4]))
	}
	return out, nil
}

// loopDevice is an attached loop device as the kernel describes it.
type loopDevice struct {
	name    string // loopN
	backing string // the backing file's path as the kernel reports it, without " (deleted)"
	deleted bool
	// dev and ino identify the backing file (LOOP_GET_STATUS64); both 0
	// when the device could not be asked.
	dev, ino uint64
}

// key identifies a device bound to one file, across a Save and Load.
func (d loopDevice) key() string {
	return fmt.Sprintf("%s %d:%d %s", d.name, d.dev, d.ino, d.backing)
}

// reported is the backing file as losetup shows it.
func (d loopDevice) reported() string {
	if d.deleted {
		return d.backing + deletedSuffix
	}
	return d.backing
}

// reachable reports whether the path the kernel reports leads to the
// backing file.
func (d loopDevice) reachable() bool {
	var st unix.Stat_t
	return !d.deleted && unix.Stat(d.backing, &st) == nil && st.Dev == d.dev && st.Ino == d.ino
}

const deletedSuffix = " (deleted)"

// loopDevices lists the attached loop devices.
func loopDevices() []loopDevice {
	var out []loopDevice
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		d := loopDevice{name: filepath.Base(filepath.Dir(filepath.Dir(f))), backing: strings.TrimSuffix(string(b), "\n")}
		d.backing, d.deleted = strings.CutSuffix(d.backing, deletedSuffix)
		if fd, err := unix.Open("/dev/"+d.name, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			if info, err := unix.IoctlLoopGetStatus64(fd); err == nil {
				d.dev, d.ino = info.Device, info.Inode
			}
			unix.Close(fd)
		}
		out = append(out, d)
	}
	return out
}

// fsOf returns the filesystem (st_dev) of p, or of its nearest existing
// parent.
func fsOf(p string) (uint64, bool) {
	for {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			return st.Dev, true
		}
		parent := filepath.Dir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// walk returns root and every path under it, parents before children; an
// empty list when root does not exist. Symlinks are not followed.
func walk(root string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func emptyDir(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return false
	}
	es, err := os.ReadDir(p)
	return err == nil && len(es) == 0
}

// under reports whether p is one of dirs or inside one.
func under(p string, dirs []string) bool {
	p = filepath.Clean(p)
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func depth(p string) int { return strings.Count(p, "/") }

func clean(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, filepath.Clean(p))
	}
	return out
}

// FileID returns the device and inode numbers of the file at path, which
// identify it to LoopDevicesOn after it is moved or removed.
func FileID(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Dev, st.Ino, nil
}

// LoopDevicesOn returns the attached loop devices (/dev/loopN, as the
// kernel reports their backing file) whose backing file is the file with
// the given device and inode numbers, whatever path the kernel reports for
// it.
func LoopDevicesOn(dev, ino uint64) []string {
	var out []string
	for _, d := range loopDevices() {
		if d.dev == dev && d.ino == ino {
			out = append(out, "/dev/"+d.name+" on "+d.reported())
		}
	}
	return out
}
