// Command dirvol-image builds the dirvol container image without a
// container engine (see package dirvolimage) and writes it as a docker
// archive; `make image` runs it. With -resolve it resolves the Debian
// packages again and rewrites the lock instead (`make image-lock`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/dirvol/dirvol/test/e2e/dirvolimage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dirvol-image:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dirvol-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "The repository to build cmd/driver from.")
	out := fs.String("out", "bin/dirvol-image.tar", "The docker archive to write (relative to -root).")
	ref := fs.String("image", "", "Image reference to tag the archive with (default: what deploy/base/kustomization.yaml names the driver's image).")
	version := fs.String("version", "", "Version of the driver (-X main.version).")
	cache := fs.String("cache", "", "Directory of downloaded .deb files (default ${XDG_CACHE_HOME:-~/.cache}/dirvol-image).")
	load := fs.Bool("load", true, "Load the archive into docker or podman when one is running.")
	printRef := fs.Bool("print-reference", false, "Print the image reference deploy/base names (the default of -image) and stop.")
	resolve := fs.Bool("resolve", false, "Resolve the Debian packages with the host's apt again and rewrite the lock, then stop.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if *cache == "" {
		dir, err := dirvolimage.DefaultCacheDir()
		if err != nil {
			return err
		}
		*cache = dir
	}
	if *printRef {
		ref, err := dirvolimage.DefaultReference(*root)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, ref)
		return err
	}
	if *resolve {
		return resolveLock(ctx, *root, *cache, stdout)
	}
	if *version == "" {
		return fmt.Errorf("-version is required (make image passes git describe): %w", errUsage)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	if *ref == "" {
		if *ref, err = dirvolimage.DefaultReference(*root); err != nil {
			return err
		}
	}
	refs := []string{*ref}
	lock, err := dirvolimage.DefaultLock()
	if err != nil {
		return err
	}

	start := time.Now()
	img, err := dirvolimage.Build(ctx, dirvolimage.Options{
		Root: *root, Version: *version, Lock: lock, Cache: *cache, Epoch: epoch, Log: stderr,
	})
	if err != nil {
		return err
	}
	archive := *out
	if !filepath.IsAbs(archive) {
		archive = filepath.Join(*root, archive)
	}
	if err := dirvolimage.WriteArchive(archive, img, refs...); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	size, err := imageSize(img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "dirvol-image: wrote %s (%s, %.1f MiB compressed) in %.1fs\n",
		archive, strings.Join(refs, ", "), float64(size)/(1<<20), time.Since(start).Seconds())
	// The image ID (the config's digest) is what docker images, crictl
	// images and a pod's status show, whatever the store; the manifest
	// digest is the one a registry would serve (containerd's import of a
	// docker archive writes a manifest of its own).
	fmt.Fprintf(stderr, "dirvol-image: image ID %s, manifest digest %s\n", id, digest)
	if *load {
		engine, err := dirvolimage.LoadIntoEngine(ctx, archive)
		switch {
		case err != nil:
			return fmt.Errorf("loading into %s: %w", engine, err)
		case engine != "":
			fmt.Fprintf(stderr, "dirvol-image: loaded into %s\n", engine)
		}
	}
	// The image ID, alone on stdout, for scripts.
	fmt.Fprintln(stdout, id)
	return nil
}

// imageSize is the sum of the compressed layers: what a node stores and a
// registry would serve.
func imageSize(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH, or 0: the timestamp of every file
// and of the image.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// resolveLock resolves the recipe's packages on this host and rewrites the
// lock file next to the dirvolimage package.
func resolveLock(ctx context.Context, root, cache string, stdout io.Writer) error {
	release, err := hostRelease()
	if err != nil {
		return err
	}
	names := slices.Concat(dirvolimage.NodePackages, dirvolimage.BasePackages)
	lock, err := dirvolimage.Resolve(ctx, names, cache, release)
	if err != nil {
		return err
	}
	file := filepath.Join(root, "test", "e2e", "dirvolimage", "debian-packages.lock")
	if err := os.WriteFile(file, lock.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dirvol-image: %d packages of Debian %s locked in %s\n", len(lock.Packages), release, file)
	return nil
}

// hostRelease is VERSION_ID of /etc/os-release, on Debian only: the lock
// pins Debian packages.
func hostRelease() (string, error) {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", err
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			fields[k] = strings.Trim(v, `"`)
		}
	}
	if fields["ID"] != "debian" || fields["VERSION_ID"] == "" {
		return "", fmt.Errorf("resolving needs a Debian host with apt (this is %q %q)", fields["ID"], fields["VERSION_ID"])
	}
	return fields["VERSION_ID"], nil
}
