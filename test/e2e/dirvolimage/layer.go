package dirvolimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"
)

// tree is the content of one layer: entries by path (relative, no leading
// slash), whatever order they were added in; bytes writes them sorted with
// fixed timestamps, so the layer depends on the content alone.
type tree struct {
	entries map[string]*entry
}

type entry struct {
	hdr    tar.Header
	data   []byte
	origin string // the package or file it came from, for conflict messages
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

// add puts hdr (and a regular file's data) at its path. A directory that is
// already there is kept; a file or link may come twice only with the same
// content (packages that ship the same file).
func (t *tree) add(hdr tar.Header, data []byte, origin string) error {
	name, ok := cleanName(hdr.Name)
	if !ok {
		return nil // the root itself
	}
	hdr.Name = name
	if hdr.Typeflag == tar.TypeLink {
		target, _ := cleanName(hdr.Linkname)
		hdr.Linkname = target
	}
	if old, ok := t.entries[name]; ok {
		switch {
		case old.hdr.Typeflag == tar.TypeDir && hdr.Typeflag == tar.TypeDir:
			return nil
		case old.hdr.Typeflag == hdr.Typeflag && old.hdr.Linkname == hdr.Linkname &&
			old.hdr.Mode == hdr.Mode && bytes.Equal(old.data, data):
			return nil
		default:
			return fmt.Errorf("/%s: %s and %s both ship it, differently", name, old.origin, origin)
		}
	}
	t.entries[name] = &entry{hdr: hdr, data: data, origin: origin}
	return nil
}

// addFile, addDir and addLink add entries the recipe writes itself.
func (t *tree) addFile(name string, mode int64, data string) error {
	return t.add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, []byte(data), "dirvol-image")
}

func (t *tree) addDir(name string, mode int64) error {
	return t.add(tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, nil, "dirvol-image")
}

func (t *tree) addLink(name, target string) error {
	return t.add(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil, "dirvol-image")
}

func (t *tree) has(name string) bool { _, ok := t.entries[name]; return ok }

// cleanName turns "./usr/bin/" into "usr/bin"; false for the root.
func cleanName(name string) (string, bool) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name, name != ""
}

// bytes writes the tree as an uncompressed tar: entries sorted by path
// (parents before children), every timestamp epoch, owners by number only,
// no extended attributes, and the parent directories every entry needs.
func (t *tree) bytes(epoch time.Time) ([]byte, error) {
	for name := range t.entries {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if !t.has(dir) {
				if err := t.addDir(dir, 0o755); err != nil {
					return nil, err
				}
			}
		}
	}
	names := make([]string, 0, len(t.entries))
	for name := range t.entries {
		names = append(names, name)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		e := t.entries[name]
		if e.hdr.Typeflag == tar.TypeLink && !t.has(e.hdr.Linkname) {
			return nil, fmt.Errorf("/%s: hard link to /%s, which the layer does not hold", name, e.hdr.Linkname)
		}
		hdr := tar.Header{
			Typeflag: e.hdr.Typeflag,
			Name:     name,
			Linkname: e.hdr.Linkname,
			Mode:     e.hdr.Mode & 0o7777,
			Uid:      e.hdr.Uid,
			Gid:      e.hdr.Gid,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.data))
		case tar.TypeSymlink, tar.TypeLink:
		default:
			return nil, fmt.Errorf("/%s (from %s): tar type %q is not a file, directory or link", name, e.origin, e.hdr.Typeflag)
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dropped says whether a path of a package stays out of the image: manuals,
// translations and documentation, except each package's copyright file,
// and glibc's iconv modules (gconv, a quarter of the layer), which none of
// the tools the driver runs loads.
func dropped(name string) bool {
	if dir, rest, ok := strings.Cut(name, "/gconv"); ok && (rest == "" || rest[0] == '/') {
		if arch, ok := strings.CutPrefix(dir, "usr/lib/"); ok && !strings.Contains(arch, "/") {
			return true
		}
	}
	for _, dir := range []string{"usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bash-completion"} {
		if name == dir || strings.HasPrefix(name, dir+"/") {
			return true
		}
	}
	if rest, ok := strings.CutPrefix(name, "usr/share/doc/"); ok {
		_, file, nested := strings.Cut(rest, "/")
		return nested && file != "copyright"
	}
	return false
}

// addDeb unpacks the filesystem of the .deb at file into t (dpkg-deb
// --fsys-tarfile: the files as dpkg would install them; maintainer scripts
// are not run) and records its control fields in
// /var/lib/dpkg/status.d/NAME, where image scanners look for the packages
// of a root without a dpkg database.
func (t *tree) addDeb(ctx context.Context, p Package, file string) error {
	control, err := run(exec.CommandContext(ctx, "dpkg-deb", "--field", file))
	if err != nil {
		return err
	}
	if err := t.addFile("var/lib/dpkg/status.d/"+p.Name, 0o644, string(control)); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	readErr := t.addTar(out, p.Name)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", file, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return readErr
}

// addTar adds every entry of the tar stream r that the image keeps.
func (t *tree) addTar(r io.Reader, origin string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", origin, err)
		}
		name, ok := cleanName(hdr.Name)
		if !ok || dropped(name) {
			continue
		}
		var data []byte
		if hdr.Typeflag == tar.TypeReg {
			if data, err = io.ReadAll(tr); err != nil {
				return fmt.Errorf("%s: /%s: %w", origin, name, err)
			}
		}
		if err := t.add(*hdr, data, origin); err != nil {
			return err
		}
	}
}

// addSkeleton adds what a root needs and no package of the recipe ships
// (debootstrap and maintainer scripts make them on a Debian system): the
// root and nobody accounts, /tmp, /etc/mtab.
func (t *tree) addSkeleton() error {
	files := []struct {
		name string
		mode int64
		data string
	}{
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
		{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nhosts: files dns\n"},
	}
	for _, f := range files {
		if !t.has(f.name) {
			if err := t.addFile(f.name, f.mode, f.data); err != nil {
				return err
			}
		}
	}
	if !t.has("etc/mtab") {
		// libmount reads the mount table here when it is not told otherwise.
		if err := t.addLink("etc/mtab", "../proc/self/mounts"); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"tmp", 0o1777}, {"root", 0o700}, {"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}} {
		if !t.has(d.name) {
			if err := t.addDir(d.name, d.mode); err != nil {
				return err
			}
		}
	}
	return nil
}
