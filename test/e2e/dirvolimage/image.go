// Package dirvolimage builds the dirvol container image without a container
// engine: a layer of Debian packages (the node tools and the libraries they
// need, pinned in debian-packages.lock and unpacked with dpkg-deb) and a
// layer with the static driver binary, written as a docker archive that
// `docker load`, `ctr images import`, `kind load image-archive`,
// `minikube image load` and `k3s ctr images import` read. Every timestamp
// is fixed and every layer sorted, so the same tree and lock give the same
// image digest.
package dirvolimage

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// BinaryPath is where the image holds the driver; the Dockerfile copies it
// to the same place.
const BinaryPath = "/usr/local/bin/dirvol"

// ImageName is the name deploy/ gives the driver's container; the
// kustomization's images: entry for it says what it becomes.
const ImageName = "dirvol"

// path is the image's PATH: the Debian packages put the tools in /bin and
// /sbin (bookworm packages predate the /usr merge).
const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

//go:embed debian-packages.lock
var lockFile []byte

// DefaultLock is the lock kept next to this file.
func DefaultLock() (Lock, error) { return ParseLock(lockFile) }

// Options says what Build builds.
type Options struct {
	// Root is the repository: cmd/driver is built from it.
	Root string
	// Version is the driver's version (-X main.version).
	Version string
	// Lock pins the Debian packages.
	Lock Lock
	// Cache holds downloaded .deb files between builds.
	Cache string
	// Epoch is every file's and the image's timestamp.
	Epoch time.Time
	// Log gets progress lines; nil discards them.
	Log io.Writer
}

// DefaultCacheDir is ${XDG_CACHE_HOME:-~/.cache}/dirvol-image.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "dirvol-image"), nil
}

// Build builds the image: the Debian layer, then the binary layer.
func Build(ctx context.Context, o Options) (v1.Image, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Version == "" {
		return nil, errors.New("dirvol-image: no version to build the driver with")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return nil, fmt.Errorf("dirvol-image unpacks Debian packages with dpkg-deb, which is not installed (Debian's dpkg package; building on a Debian %s host, or with make image-docker, works): %w", o.Lock.Release, err)
	}
	debs, err := Fetch(ctx, o.Lock, o.Cache, o.Log)
	if err != nil {
		return nil, err
	}
	base := newTree()
	for i, p := range o.Lock.Packages {
		if err := base.addDeb(ctx, p, debs[i]); err != nil {
			return nil, err
		}
	}
	if err := base.addSkeleton(); err != nil {
		return nil, err
	}
	baseTar, err := base.bytes(o.Epoch)
	if err != nil {
		return nil, err
	}

	bin, err := buildDriver(ctx, o.Root, o.Version)
	if err != nil {
		return nil, err
	}
	top := newTree()
	if err := top.add(tar.Header{Typeflag: tar.TypeReg, Name: BinaryPath, Mode: 0o755}, bin, "cmd/driver"); err != nil {
		return nil, err
	}
	binTar, err := top.bytes(o.Epoch)
	if err != nil {
		return nil, err
	}

	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: o.Epoch},
		Config: v1.Config{
			Entrypoint: []string{BinaryPath},
			Env:        []string{pathEnv},
			WorkingDir: "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":   "dirvol",
				"org.opencontainers.image.version": o.Version,
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		data      []byte
		createdBy string
	}{
		{baseTar, "Debian " + o.Lock.Release + " packages: " + strings.Join(packageNames(o.Lock), " ")},
		{binTar, "dirvol " + o.Version + " (CGO_ENABLED=0 go build -trimpath ./cmd/driver)"},
	} {
		data := l.data
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: o.Epoch}, CreatedBy: l.createdBy}})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

func packageNames(l Lock) []string {
	names := make([]string, len(l.Packages))
	for i, p := range l.Packages {
		names[i] = p.Name
	}
	return names
}

// buildDriver builds cmd/driver as the Dockerfile does: static, trimmed
// paths, no VCS stamp (the version is the -X flag), so the same tree gives
// the same bytes.
func buildDriver(ctx context.Context, root, version string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "dirvol-image-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "dirvol")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/driver")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if _, err := run(cmd); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// DefaultReference is what deploy/base's kustomization makes of the
// driver's image name: the reference the DaemonSet runs, and so the name
// and tag `make image` gives the archive.
func DefaultReference(root string) (string, error) {
	file := filepath.Join(root, "deploy", "base", "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	for _, img := range k.Images {
		if img.Name != ImageName {
			continue
		}
		if img.NewName == "" || img.NewTag == "" || img.Digest != "" {
			return "", fmt.Errorf("%s: images entry %q wants newName and newTag (and no digest)", file, ImageName)
		}
		return img.NewName + ":" + img.NewTag, nil
	}
	return "", fmt.Errorf("%s: no images entry for %q", file, ImageName)
}

// WriteArchive writes img as a docker archive at path, tagged with each of
// refs, through a temporary file so that a failed write leaves no
// half-written archive.
func WriteArchive(path string, img v1.Image, refs ...string) error {
	tags := map[name.Reference]v1.Image{}
	for _, r := range refs {
		tag, err := name.NewTag(r, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", r, err)
		}
		tags[tag] = img
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, tags); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// LoadIntoEngine loads the archive into docker or podman when one of them
// answers (a client whose daemon is not running does not count). It
// returns the engine used, or "" when none is there.
func LoadIntoEngine(ctx context.Context, archive string) (string, error) {
	for _, engine := range []string{"docker", "podman"} {
		if _, err := exec.LookPath(engine); err != nil {
			continue
		}
		infoCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := exec.CommandContext(infoCtx, engine, "info").Run()
		cancel()
		if err != nil {
			continue
		}
		if _, err := run(exec.CommandContext(ctx, engine, "load", "-i", archive)); err != nil {
			return engine, err
		}
		return engine, nil
	}
	return "", nil
}
