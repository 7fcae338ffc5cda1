package dirvolimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// NodePackages are the Debian packages whose programs the node code runs:
// mount and umount (k8s.io/mount-utils runs them, and mounts image pools
// with -o loop), blkid (pool images), losetup, and mkfs.btrfs. The
// Dockerfile installs the same list (TestDockerfileMatchesRecipe).
var NodePackages = []string{"mount", "util-linux", "btrfs-progs"}

// BasePackages complete the root filesystem that debian:*-slim gives the
// Dockerfile's image: base-files holds /etc/os-release and the directory
// skeleton. libc and the other libraries come in as dependencies.
var BasePackages = []string{"base-files"}

// Package is one resolved Debian package, pinned by version and by the
// SHA-256 of its .deb file.
type Package struct {
	Name, Version, Arch string
	SHA256              string
}

// File is the name apt gives the package's .deb (an epoch's colon becomes
// %3a).
func (p Package) File() string {
	return strings.ReplaceAll(p.Name+"_"+p.Version+"_"+p.Arch+".deb", ":", "%3a")
}

func (p Package) String() string {
	return p.Name + " " + p.Version + " " + p.Arch + " sha256:" + p.SHA256
}

// Lock is the resolved package set: every package of the image's Debian
// layer, dependencies included, sorted by name. It is kept in
// debian-packages.lock, so builds take the same bytes whatever the mirror
// has moved on to, until `make image-lock` resolves again.
type Lock struct {
	// Release is the Debian release the packages come from, as in
	// /etc/os-release VERSION_ID ("12").
	Release  string
	Packages []Package
}

var lockLine = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]+) ([0-9A-Za-z.+~:-]+) ([a-z0-9]+) sha256:([0-9a-f]{64})$`)

// ParseLock reads a lock written by Lock.Write.
func ParseLock(data []byte) (Lock, error) {
	var l Lock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "# debian "); ok {
			l.Release = v
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := lockLine.FindStringSubmatch(line)
		if m == nil {
			return Lock{}, fmt.Errorf("package lock line %d: %q is not NAME VERSION ARCH sha256:HEX", n, line)
		}
		l.Packages = append(l.Packages, Package{Name: m[1], Version: m[2], Arch: m[3], SHA256: m[4]})
	}
	if l.Release == "" {
		return Lock{}, errors.New(`package lock: no "# debian RELEASE" line`)
	}
	if len(l.Packages) == 0 {
		return Lock{}, errors.New("package lock: no packages")
	}
	return l, nil
}

// Bytes is the lock as written to debian-packages.lock.
func (l Lock) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString("# The Debian packages of the dirvol image, dependencies included, pinned by\n")
	b.WriteString("# version and SHA-256. Written by `make image-lock`; do not edit.\n")
	fmt.Fprintf(&b, "# Resolved from: %s\n", strings.Join(slices.Concat(NodePackages, BasePackages), " "))
	fmt.Fprintf(&b, "# debian %s\n", l.Release)
	for _, p := range l.Packages {
		b.WriteString(p.String() + "\n")
	}
	return b.Bytes()
}

// Has says whether the lock holds a package named name.
func (l Lock) Has(name string) bool {
	return slices.ContainsFunc(l.Packages, func(p Package) bool { return p.Name == name })
}

// apt runs apt-get against the host's package lists (so the host's sources,
// mirrors and proxies apply) with a state of its own in dir: an empty dpkg
// status, so every dependency is resolved as for an empty root, and a
// cache of its own, so the host's dpkg and apt state are not touched.
type apt struct{ dir string }

func newApt(dir string) (*apt, error) {
	if err := os.MkdirAll(filepath.Join(dir, "archives", "partial"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), nil, 0o644); err != nil {
		return nil, err
	}
	return &apt{dir: dir}, nil
}

func (a *apt) command(ctx context.Context, args ...string) *exec.Cmd {
	opts := []string{
		"-o", "Dir::State::status=" + filepath.Join(a.dir, "status"),
		"-o", "Dir::Cache=" + a.dir,
		"-o", "Dir::Cache::archives=" + filepath.Join(a.dir, "archives"),
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Install-Recommends=false",
		"-o", "APT::Sandbox::User=root",
	}
	cmd := exec.CommandContext(ctx, "apt-get", append(opts, args...)...)
	cmd.Dir = a.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	return cmd
}

func run(cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// instLine is a package apt-get -s would unpack: "Inst NAME (VERSION ... [ARCH])".
var instLine = regexp.MustCompile(`^Inst (\S+) \((\S+) .*\[(\S+)\]\)`)

// Resolve resolves names and their dependencies with the host's apt, as an
// install into an empty root would, downloads each package into cache and
// returns the lock. release names the host's Debian release.
func Resolve(ctx context.Context, names []string, cache, release string) (Lock, error) {
	tmp, err := aptDir(cache)
	if err != nil {
		return Lock{}, err
	}
	defer os.RemoveAll(tmp)
	a, err := newApt(tmp)
	if err != nil {
		return Lock{}, err
	}
	out, err := run(a.command(ctx, append([]string{"-s", "install"}, names...)...))
	if err != nil {
		return Lock{}, err
	}
	lock := Lock{Release: release}
	for line := range strings.Lines(string(out)) {
		if m := instLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			lock.Packages = append(lock.Packages, Package{Name: m[1], Version: m[2], Arch: m[3]})
		}
	}
	if len(lock.Packages) == 0 {
		return Lock{}, fmt.Errorf("apt-get -s install %s resolved no packages:\n%s", strings.Join(names, " "), out)
	}
	slices.SortFunc(lock.Packages, func(x, y Package) int { return strings.Compare(x.Name, y.Name) })
	paths, err := download(ctx, a, lock.Packages, cache)
	if err != nil {
		return Lock{}, err
	}
	for i, path := range paths {
		if lock.Packages[i].SHA256, err = fileSHA256(path); err != nil {
			return Lock{}, err
		}
	}
	return lock, nil
}

// Fetch returns the path of each locked package's .deb in cache,
// downloading with apt-get the ones not there, and checks every file
// against its SHA-256 in the lock.
func Fetch(ctx context.Context, lock Lock, cache string, log io.Writer) ([]string, error) {
	paths := make([]string, len(lock.Packages))
	var missing []Package
	for i, p := range lock.Packages {
		paths[i] = filepath.Join(cache, p.File())
		if sum, err := fileSHA256(paths[i]); err != nil || sum != p.SHA256 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if _, err := exec.LookPath("apt-get"); err != nil {
			return nil, fmt.Errorf("%d Debian packages of the lock are not in %s, and there is no apt-get to download them (build on a Debian %s host, or with make image-docker): %w", len(missing), cache, lock.Release, err)
		}
		tmp, err := aptDir(cache)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		a, err := newApt(tmp)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "dirvol-image: downloading %d Debian packages into %s\n", len(missing), cache)
		if _, err := download(ctx, a, missing, cache); err != nil {
			return nil, fmt.Errorf("%w (the host's package lists lack a locked version? run `make image-lock` on a host of Debian %s, after apt-get update)", err, lock.Release)
		}
	}
	for i, p := range lock.Packages {
		sum, err := fileSHA256(paths[i])
		if err != nil {
			return nil, err
		}
		if sum != p.SHA256 {
			_ = os.Remove(paths[i])
			return nil, fmt.Errorf("%s: sha256 %s, but the lock says %s", p.File(), sum, p.SHA256)
		}
	}
	return paths, nil
}

// download fetches pkgs with one apt-get download into a's directory (apt
// checks each against the signed package index) and moves them into cache.
func download(ctx context.Context, a *apt, pkgs []Package, cache string) ([]string, error) {
	args := []string{"-q", "download"}
	for _, p := range pkgs {
		args = append(args, p.Name+":"+p.Arch+"="+p.Version)
	}
	if _, err := run(a.command(ctx, args...)); err != nil {
		return nil, err
	}
	paths := make([]string, len(pkgs))
	for i, p := range pkgs {
		paths[i] = filepath.Join(cache, p.File())
		if err := os.Rename(filepath.Join(a.dir, p.File()), paths[i]); err != nil {
			return nil, fmt.Errorf("apt-get download %s: %w", p.Name, err)
		}
	}
	return paths, nil
}

// aptDir is a fresh apt state directory inside cache, so that downloads
// are renamed into cache, never copied across filesystems.
func aptDir(cache string) (string, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(cache, ".apt-")
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
