package manifests

import (
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestOverlayChangesOnlyImages: deploy/base through an Overlay of every
// workload image renders the same objects as deploy/base, except for
// exactly those image references.
func TestOverlayChangesOnlyImages(t *testing.T) {
	base := filepath.Join("..", "..", "..", "deploy", "base")
	want, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	refs := ContainerImages(want)
	if len(refs) == 0 {
		t.Fatal("deploy/base has no container images")
	}
	var imgs []Image
	swapped := map[string]string{}
	for i, ref := range refs {
		img := Image{Name: ImageName(ref), NewName: "dirvol.test/img" + string(rune('a'+i)), NewTag: "e2e"}
		imgs = append(imgs, img)
		if swapped[ref], err = img.Retag(ref); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if _, err := Overlay(dir, base, imgs); err != nil {
		t.Fatal(err)
	}
	got, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("overlay renders %d objects, base %d", len(got), len(want))
	}
	gotRefs := ContainerImages(got)
	for _, ref := range refs {
		found := false
		for _, g := range gotRefs {
			found = found || g == swapped[ref]
		}
		if !found {
			t.Errorf("image %s not swapped for %s (overlay images: %v)", ref, swapped[ref], gotRefs)
		}
	}
	// Swap back: the rest must be identical.
	for i := range got {
		restoreImages(got[i], swapped)
		if !reflect.DeepEqual(got[i].Object, want[i].Object) {
			t.Errorf("%s %s differs from deploy/base beyond its images", got[i].GetKind(), got[i].GetName())
		}
	}
}

func TestImageName(t *testing.T) {
	for ref, want := range map[string]string{
		"registry.k8s.io/sig-storage/csi-provisioner:v6.4.0": "registry.k8s.io/sig-storage/csi-provisioner",
		"dirvol":                              "dirvol",
		"dirvol:latest":                       "dirvol",
		"localhost:5000/dirvol":               "localhost:5000/dirvol",
		"localhost:5000/dirvol:v1@sha256:abc": "localhost:5000/dirvol",
	} {
		if got := ImageName(ref); got != want {
			t.Errorf("ImageName(%q) = %q, want %q", ref, got, want)
		}
	}
}

func restoreImages(o *unstructured.Unstructured, swapped map[string]string) {
	back := map[string]string{}
	for from, to := range swapped {
		back[to] = from
	}
	for _, m := range templateContainers(o) {
		if img, ok := m["image"].(string); ok && back[img] != "" {
			m["image"] = back[img]
		}
	}
}
