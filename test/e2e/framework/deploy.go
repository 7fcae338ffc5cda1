package framework

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/cluster"
	"github.com/dirvol/dirvol/test/e2e/dirvolimage"
	"github.com/dirvol/dirvol/test/e2e/helmchart"
	"github.com/dirvol/dirvol/test/e2e/images"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// sidecarImage is the image the harness makes for one sidecar container of
// deploy/'s DaemonSet.
type sidecarImage struct {
	container string          // the container's name, which is the binary's
	archive   string          // the docker archive the node imports
	entry     manifests.Image // the images: entry that swaps it in
}

// sidecarImages writes, into dir, an image for every container of deploy/'s
// DaemonSet that runs a binary the harness builds (csi-provisioner,
// csi-snapshotter, csi-resizer: the container's name is the binary's).
// driver is the container whose image comes from elsewhere (the dirvol
// image).
func sidecarImages(ctx context.Context, deployDir, dir string, bins binaries.Set, driver string) ([]sidecarImage, error) {
	objs, err := manifests.Render(filepath.Join(deployDir, "base"))
	if err != nil {
		return nil, err
	}
	var out []sidecarImage
	for _, ds := range manifests.Select(objs, "DaemonSet") {
		for _, ctr := range containerNamesAndImages(ds.Object) {
			name, ref := ctr[0], ctr[1]
			if name == driver {
				continue
			}
			bin := bins.Path(name)
			if bin == "" {
				return nil, fmt.Errorf("DaemonSet %s: container %s runs %s, and the harness builds no binary named %s for its image", ds.GetName(), name, ref, name)
			}
			local := "dirvol.test/" + name
			archive := filepath.Join(dir, name+".tar")
			if err := images.Binary(ctx, archive, local+":e2e", bin); err != nil {
				return nil, err
			}
			out = append(out, sidecarImage{name, archive, manifests.Image{Name: manifests.ImageName(ref), NewName: local, NewTag: "e2e"}})
		}
	}
	return out, nil
}

// chartInstall describes helm install of charts/dirvol with the harness's
// sidecar images: the same swaps as the kustomize overlay's images:, given
// as the chart's values (sidecars.<container without "csi-">.image); the
// dirvol image keeps the reference the chart defaults to, which the image
// built from this tree carries. The chart's other values are its defaults:
// deploy/base's objects.
func chartInstall(repoRoot, runDir string, bins binaries.Set, sidecars []sidecarImage) *cluster.ChartInstall {
	ci := &cluster.ChartInstall{
		Helm:    helmchart.Helm{Bin: bins.Path(binaries.Helm), Home: filepath.Join(runDir, "helm")},
		Chart:   filepath.Join(repoRoot, "charts", "dirvol"),
		Release: ChartRelease, Namespace: metav1.NamespaceDefault,
	}
	for _, s := range sidecars {
		ci.Args = append(ci.Args, "--set", fmt.Sprintf("sidecars.%s.image=%s:%s", strings.TrimPrefix(s.container, "csi-"), s.entry.NewName, s.entry.NewTag))
	}
	return ci
}

// ChartRelease is the name of the helm release of Options.Chart.
const ChartRelease = "dirvol"

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
