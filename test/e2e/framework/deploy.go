package framework

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/dirvolimage"
	"github.com/dirvol/dirvol/test/e2e/images"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// sidecarImages writes, into dir, an image for every container of deploy/'s
// DaemonSet that runs a binary the harness builds (csi-provisioner,
// csi-snapshotter, csi-resizer: the container's name is the binary's), and
// returns the archives and the overlay's images: entries for them. driver
// is the container whose image comes from elsewhere (the dirvol image).
func sidecarImages(ctx context.Context, deployDir, dir string, bins binaries.Set, driver string) ([]string, []manifests.Image, error) {
	objs, err := manifests.Render(filepath.Join(deployDir, "base"))
	if err != nil {
		return nil, nil, err
	}
	var archives []string
	var entries []manifests.Image
	for _, ds := range manifests.Select(objs, "DaemonSet") {
		for _, ctr := range containerNamesAndImages(ds.Object) {
			name, ref := ctr[0], ctr[1]
			if name == driver {
				continue
			}
			bin := bins.Path(name)
			if bin == "" {
				return nil, nil, fmt.Errorf("DaemonSet %s: container %s runs %s, and the harness builds no binary named %s for its image", ds.GetName(), name, ref, name)
			}
			local := "dirvol.test/" + name
			archive := filepath.Join(dir, name+".tar")
			if err := images.Binary(ctx, archive, local+":e2e", bin); err != nil {
				return nil, nil, err
			}
			archives = append(archives, archive)
			entries = append(entries, manifests.Image{Name: manifests.ImageName(ref), NewName: local, NewTag: "e2e"})
		}
	}
	return archives, entries, nil
}

// containerNamesAndImages returns [name, image] of each container of a
// workload object's pod template.
func containerNamesAndImages(obj map[string]any) [][2]string {
	var out [][2]string
	m := obj
	for _, k := range []string{"spec", "template", "spec"} {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	list, _ := m["containers"].([]any)
	for _, raw := range list {
		c, _ := raw.(map[string]any)
		name, _ := c["name"].(string)
		img, _ := c["image"].(string)
		if name != "" && img != "" {
			out = append(out, [2]string{name, img})
		}
	}
	return out
}

// driverContainer is the DaemonSet's container that runs the dirvol image.
const driverContainer = "dirvol"

// buildDriverImage builds the dirvol image from the tree at repoRoot as
// `make image` does (package dirvolimage; its Debian packages cached in
// its default cache) and writes it to out, tagged with the reference
// deploy/ runs, so that no overlay entry is needed for it.
func buildDriverImage(ctx context.Context, repoRoot, out string, log io.Writer) error {
	lock, err := dirvolimage.DefaultLock()
	if err != nil {
		return err
	}
	cache, err := dirvolimage.DefaultCacheDir()
	if err != nil {
		return err
	}
	img, err := dirvolimage.Build(ctx, dirvolimage.Options{
		Root: repoRoot, Version: "e2e", Lock: lock, Cache: cache, Epoch: time.Unix(0, 0).UTC(), Log: log,
	})
	if err != nil {
		return fmt.Errorf("build the dirvol image: %w", err)
	}
	ref, err := dirvolimage.DefaultReference(repoRoot)
	if err != nil {
		return err
	}
	return dirvolimage.WriteArchive(out, img, ref)
}
