package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ViewDir is the directory under a pool's root that holds the claim view:
// <root>/by-pvc/<namespace>/<claim>/<entry> is a symbolic link to
// ../../../volumes/<id>, where <entry> is the PersistentVolume's name (or the
// volume ID, see View.Link).
//
// Why a view of links rather than directories named from a template: the
// data stays at volumes/<id>, keyed by an ID the driver generated, so no
// name from a request ever becomes the path of data, two claims with the same
// name can never share or swap data, nothing is renamed, and everything that
// works on volumes (delete, retain, archive, snapshots, the node's mounts)
// is unchanged. The view is derived state: the volume core rebuilds it from
// the catalog at every start, so it is neither fsynced nor journalled.
//
// The driver never follows a link in the view: it reads them (readlinkat)
// and makes and removes them, always relative to directory descriptors
// opened with O_NOFOLLOW, so that a link planted in place of a directory of
// the view is refused, not followed out of the pool.
const ViewDir = "by-pvc"

// ErrViewBlocked means something that is not the view's own (a file, or a
// symbolic link where a directory belongs) sits where an entry goes.
var ErrViewBlocked = errors.New("blocked by something that is not part of the view")

// viewTarget is where an entry points, relative to its own directory.
const viewTarget = "../../../" + volumesDir + "/"

// Claim names the PersistentVolumeClaim a volume was made for.
type Claim struct {
	Namespace, Name string
	// PV is the PersistentVolume's name; empty when not known.
	PV string
}

// ViewEntry is one name found in the view by Entries.
type ViewEntry struct {
	// Namespace and Claim are the directories the entry is in; Claim is
	// empty for something found directly in a namespace's place, and Name
	// for something found directly in a claim's place.
	Namespace, Claim, Name string
	// Link reports whether the entry is a symbolic link; VolumeID is the
	// volume it points to, empty when it does not point at a volume of the
	// pool in the view's way.
	Link     bool
	VolumeID string
}

// Path returns the entry's path relative to the pool's root.
func (e ViewEntry) Path() string {
	return filepath.Join(ViewDir, e.Namespace, e.Claim, e.Name)
}

// View makes, removes and lists the entries of a pool's claim view. Link
// and Unlink of different volumes may share a claim's directory, which
// Unlink removes when it empties it: mu keeps a Link from making its entry
// in a directory an Unlink is removing. It is held only for a few
// directory operations, never across a volume's data. Entries, Remove
// and PruneEmpty run only before serving.
type View struct {
	root string
	mu   sync.Mutex
}

// NewView returns the view of the pool rooted at root.
func NewView(root string) *View { return &View{root: root} }

// Link makes the entry of volume id for claim c and returns its path. The
// entry is named after c.PV; when that name already points to another
// volume (possible only outside Kubernetes, where PV names are unique) or
// c.PV is empty, it is named after the volume ID instead, so two volumes
// never share an entry. An entry that already points to id is kept: Link
// is idempotent.
func (v *View) Link(id string, c Claim) (string, error) {
	names, err := entryNames(id, c)
	if err != nil {
		return "", err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.link(id, c, names)
}

func (v *View) link(id string, c Claim, names []string) (string, error) {
	dir, err := v.openClaim(c, true)
	if err != nil {
		return "", err
	}
	defer unix.Close(dir)
	for _, name := range names {
		err := unix.Symlinkat(viewTarget+id, dir, name)
		if err == nil || errors.Is(err, unix.EEXIST) && linkTarget(dir, name) == id {
			return filepath.Join(v.claimPath(c), name), nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", fmt.Errorf("link %s/%s: %w", v.claimPath(c), name, err)
		}
	}
	return "", fmt.Errorf("entries %v of %s are taken by other volumes or files: %w", names, v.claimPath(c), ErrViewBlocked)
}

// Unlink removes the entries of claim c that point to volume id, then the
// claim's and namespace's directories if that left them empty. Anything
// else is left alone; nothing there is not an error.
func (v *View) Unlink(id string, c Claim) error {
	names, err := entryNames(id, c)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	dir, err := v.openClaim(c, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, ErrViewBlocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	for _, name := range names {
		if linkTarget(dir, name) != id {
			continue
		}
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", v.claimPath(c), name, err)
		}
	}
	return v.prune(c.Namespace, c.Name)
}

// Entries lists everything in the view, without following links.
func (v *View) Entries() ([]ViewEntry, error) {
	top, err := openDirAt(unix.AT_FDCWD, filepath.Join(v.root, ViewDir))
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(top)
	var out []ViewEntry
	namespaces, err := readDirFD(top)
	if err != nil {
		return nil, err
	}
	for _, ns := range namespaces {
		nsfd, err := openDirAt(top, ns)
		if err != nil {
			out = append(out, ViewEntry{Namespace: ns, Link: isLinkAt(top, ns)})
			continue
		}
		claims, err := readDirFD(nsfd)
		if err != nil {
			unix.Close(nsfd)
			return nil, err
		}
		for _, claim := range claims {
			cfd, err := openDirAt(nsfd, claim)
			if err != nil {
				out = append(out, ViewEntry{Namespace: ns, Claim: claim, Link: isLinkAt(nsfd, claim)})
				continue
			}
			names, err := readDirFD(cfd)
			if err == nil {
				for _, name := range names {
					out = append(out, ViewEntry{Namespace: ns, Claim: claim, Name: name,
						Link: isLinkAt(cfd, name), VolumeID: linkTarget(cfd, name)})
				}
			}
			unix.Close(cfd)
			if err != nil {
				unix.Close(nsfd)
				return nil, err
			}
		}
		unix.Close(nsfd)
	}
	return out, nil
}

// Remove removes entry e if it is a symbolic link, then its claim's and
// namespace's directories if that left them empty. Something that is not a
// link is never removed: it is ErrViewBlocked, for an operator to look at.
func (v *View) Remove(e ViewEntry) error {
	var dirs []string
	name := e.Namespace
	switch {
	case e.Claim != "" && e.Name != "":
		dirs, name = []string{e.Namespace, e.Claim}, e.Name
	case e.Claim != "":
		dirs, name = []string{e.Namespace}, e.Claim
	}
	for _, n := range append(dirs, name) {
		if err := checkName(n); err != nil {
			return fmt.Errorf("claim view: %w", err)
		}
	}
	where := filepath.Join(append([]string{v.root, ViewDir}, dirs...)...)
	// The directories are opened one by one without following links, so a
	// link planted among them is not followed.
	dir, err := v.openPath(dirs)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if !isLinkAt(dir, name) {
		return fmt.Errorf("%s/%s is not a symbolic link and is left in place: %w", where, name, ErrViewBlocked)
	}
	if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s/%s: %w", where, name, err)
	}
	return v.prune(e.Namespace, e.Claim)
}

// PruneEmpty removes the claim and namespace directories of the view that
// hold nothing, as a stop between an entry's removal and its directories'
// can leave.
func (v *View) PruneEmpty() error {
	top, err := openDirAt(unix.AT_FDCWD, filepath.Join(v.root, ViewDir))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(top)
	namespaces, err := readDirFD(top)
	if err != nil {
		return err
	}
	for _, ns := range namespaces {
		nsfd, err := openDirAt(top, ns)
		if err != nil {
			continue // not a directory: Entries reports it
		}
		claims, err := readDirFD(nsfd)
		for _, claim := range claims {
			if err == nil {
				err = rmdirIfEmpty(nsfd, claim)
			}
		}
		unix.Close(nsfd)
		if err != nil {
			return err
		}
		if err := rmdirIfEmpty(top, ns); err != nil {
			return err
		}
	}
	return nil
}

// prune removes the directories of claim and then namespace when empty.
func (v *View) prune(namespace, claim string) error {
	top, err := openDirAt(unix.AT_FDCWD, filepath.Join(v.root, ViewDir))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(top)
	if claim != "" {
		ns, err := openDirAt(top, namespace)
		if err != nil {
			return nil // not a directory of the view: nothing to prune
		}
		err = rmdirIfEmpty(ns, claim)
		unix.Close(ns)
		if err != nil {
			return err
		}
	}
	return rmdirIfEmpty(top, namespace)
}

func rmdirIfEmpty(dir int, name string) error {
	err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY),
		errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTDIR):
		return nil
	}
	return fmt.Errorf("remove empty view directory %s: %w", name, err)
}

// entryNames checks c and id and returns the entry names Link tries, in
// order.
func entryNames(id string, c Claim) ([]string, error) {
	for _, n := range []string{id, c.Namespace, c.Name} {
		if err := checkName(n); err != nil {
			return nil, fmt.Errorf("claim view: %w", err)
		}
	}
	if c.PV == "" || c.PV == id {
		return []string{id}, nil
	}
	if err := checkName(c.PV); err != nil {
		return nil, fmt.Errorf("claim view: %w", err)
	}
	return []string{c.PV, id}, nil
}

func (v *View) claimPath(c Claim) string {
	return filepath.Join(v.root, ViewDir, c.Namespace, c.Name)
}

// openClaim opens the directory of claim c, making it and its parents when
// create is set. A link or file in place of one of them is ErrViewBlocked.
func (v *View) openClaim(c Claim, create bool) (int, error) {
	dir, err := openDirAt(unix.AT_FDCWD, v.root)
	if err != nil {
		return -1, err
	}
	for _, name := range []string{ViewDir, c.Namespace, c.Name} {
		if create {
			mode := uint32(0o755)
			if name == ViewDir {
				// Only root lists the namespaces and claims of a node.
				mode = 0o700
			}
			if err := unix.Mkdirat(dir, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(dir)
				return -1, fmt.Errorf("make view directory %s: %w", name, err)
			}
		}
		next, err := openDirAt(dir, name)
		unix.Close(dir)
		if err != nil {
			return -1, err
		}
		dir = next
	}
	return dir, nil
}

// openPath opens the directory dirs under the view's directory, one
// component at a time without following links.
func (v *View) openPath(dirs []string) (int, error) {
	dir, err := openDirAt(unix.AT_FDCWD, filepath.Join(v.root, ViewDir))
	if err != nil {
		return -1, err
	}
	for _, name := range dirs {
		next, err := openDirAt(dir, name)
		unix.Close(dir)
		if err != nil {
			return -1, err
		}
		dir = next
	}
	return dir, nil
}

// openDirAt opens directory name in dir without following a link at name:
// a link, or anything else that is not a directory, is ErrViewBlocked.
func openDirAt(dir int, name string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%s is not a directory: %w", name, ErrViewBlocked)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", name, err)
	}
	return fd, nil
}

// readDirFD lists the names in directory fd; fd stays open.
func readDirFD(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "view")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// linkTarget returns the volume ID that link name in dir points to in the
// view's way, or "" when name is not such a link.
func linkTarget(dir int, name string) string {
	buf := make([]byte, 256)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil || n == len(buf) {
		return ""
	}
	id, ok := strings.CutPrefix(string(buf[:n]), viewTarget)
	if !ok || checkName(id) != nil {
		return ""
	}
	return id
}

func isLinkAt(dir int, name string) bool {
	var st unix.Stat_t
	err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}
