package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Image is one images: entry of a kustomization: the image name as the
// manifests spell it (no tag) and what to replace it with.
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// Overlay writes, into dir, a kustomization whose only resource is base (a
// kustomization directory) and whose only change is images: an overlay that
// swaps image references and nothing else. It returns the kustomization's
// text, which names every difference from base.
func Overlay(dir, base string, images []Image) (string, error) {
	abs, err := filepath.Abs(base)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		return "", err
	}
	sorted := append([]Image(nil), images...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  []string{rel},
		"images":     sorted,
	})
	if err != nil {
		return "", err
	}
	text := "# The cluster tests' overlay: " + base + " with its images swapped for ones\n# made from this tree and the harness's binaries; nothing else differs.\n" + string(b)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(text), 0o644); err != nil {
		return "", err
	}
	return text, nil
}

// ContainerImages returns every container and init container image of the
// workloads among objs (DaemonSets, Deployments, StatefulSets), sorted and
// without repeats.
func ContainerImages(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	for _, o := range objs {
		switch o.GetKind() {
		case "DaemonSet", "Deployment", "StatefulSet":
		default:
			continue
		}
		for _, m := range templateContainers(o) {
			if img, ok := m["image"].(string); ok {
				seen[img] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}

// ImageName returns an image reference without its tag or digest:
// "registry.k8s.io/sig-storage/csi-provisioner:v6.4.0" gives
// "registry.k8s.io/sig-storage/csi-provisioner".
func ImageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// Retag returns the reference an images: entry gives ref.
func (i Image) Retag(ref string) (string, error) {
	if ImageName(ref) != i.Name {
		return "", fmt.Errorf("image %s is not %s", ref, i.Name)
	}
	out := i.Name
	if i.NewName != "" {
		out = i.NewName
	}
	return out + ":" + i.NewTag, nil
}

// templateContainers returns the containers and init containers of a workload's
// pod template, as the maps they are in the object (so a caller may edit
// them). Not through unstructured.NestedSlice: that deep-copies, and
// kustomize's output holds int values it refuses to copy.
func templateContainers(o *unstructured.Unstructured) []map[string]any {
	var out []map[string]any
	m := o.Object
	for _, k := range []string{"spec", "template", "spec"} {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	for _, field := range []string{"containers", "initContainers"} {
		list, _ := m[field].([]any)
		for _, raw := range list {
			if c, ok := raw.(map[string]any); ok {
				out = append(out, c)
			}
		}
	}
	return out
}
