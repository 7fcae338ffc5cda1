package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/cluster"
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
		if name != "" && img != "" && !strings.HasPrefix(img, "dirvol.test/") {
			out = append(out, [2]string{name, img})
		}
	}
	return out
}

// deployOnRealNode writes the dirvol image (built from the repository that
// holds deployDir, tagged with the reference deploy/base gives it, so the
// DaemonSet runs it unchanged) and the sidecars' images into the run
// directory, and sets r to import them and apply deploy/base through an
// overlay that swaps the sidecars' image references.
func deployOnRealNode(ctx context.Context, r *cluster.RealNodeOptions, deployDir, runDir string, bins binaries.Set, log io.Writer) error {
	imgDir := filepath.Join(runDir, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	repo := filepath.Dir(deployDir)
	ref, err := dirvolimage.DefaultReference(repo)
	if err != nil {
		return err
	}
	lock, err := dirvolimage.DefaultLock()
	if err != nil {
		return err
	}
	cache, err := dirvolimage.DefaultCacheDir()
	if err != nil {
		return err
	}
	start := time.Now()
	img, err := dirvolimage.Build(ctx, dirvolimage.Options{
		Root: repo, Version: "e2e", Lock: lock, Cache: cache, Epoch: time.Unix(0, 0).UTC(), Log: log,
	})
	if err != nil {
		return fmt.Errorf("dirvol image: %w", err)
	}
	driverArchive := filepath.Join(imgDir, "dirvol.tar")
	if err := dirvolimage.WriteArchive(driverArchive, img, ref); err != nil {
		return err
	}
	fmt.Fprintf(log, "e2e: dirvol image %s built in %s\n", ref, time.Since(start).Round(time.Millisecond))
	archives, entries, err := sidecarImages(ctx, deployDir, imgDir, bins, dirvolimage.ImageName)
	if err != nil {
		return err
	}
	overlay := filepath.Join(runDir, "deploy-overlay")
	if _, err := manifests.Overlay(overlay, filepath.Join(deployDir, "base"), entries); err != nil {
		return err
	}
	r.Images = append(r.Images, driverArchive)
	r.Images = append(r.Images, archives...)
	r.Deploy = overlay
	return nil
}
