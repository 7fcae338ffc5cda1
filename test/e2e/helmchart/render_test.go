package helmchart

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// helm lint passes on the chart, with its defaults and with pools of every
// kind (an image pool, a btrfs directory pool, pools outside the data dir).
func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"pools", []string{"--values", filepath.Join("testdata", "pools.yaml")}},
		{"image pool", []string{"--values", filepath.Join("testdata", "image-pool.yaml")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm.Run(context.Background(), append([]string{"lint", "--strict", chartDir}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Fatalf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

// The chart with its default values renders exactly deploy/base (not
// overlays/default-class: like the base, the chart leaves the cluster's
// default StorageClass alone unless asked), and values reproduce the
// overlays: every object of one render is in the other, equal field by field.
func TestRendersDeploy(t *testing.T) {
	for _, tc := range []struct {
		kustomization string
		args          []string
	}{
		{"base", nil},
		{"overlays/image-pool", []string{"--values", filepath.Join("testdata", "image-pool.yaml")}},
		{"overlays/default-class", []string{"--set", "defaultStorageClass=dirvol"}},
	} {
		t.Run(tc.kustomization, func(t *testing.T) {
			want, err := manifests.Render(filepath.Join(deployDir, tc.kustomization))
			if err != nil {
				t.Fatal(err)
			}
			got, err := helm.Template(context.Background(), "dirvol", chartDir, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			diffs, err := Diff(want, got)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffs {
				t.Errorf("deploy/%s vs helm template %s: %s", tc.kustomization, strings.Join(tc.args, " "), d)
			}
			t.Logf("%d objects from kustomize, %d from helm", len(want), len(got))
		})
	}
}

// Diff names the object and the field path of each difference, so that a
// chart drifting from deploy/ fails the test above with a line that says
// where.
func TestDiffNamesObjectAndField(t *testing.T) {
	want, err := manifests.Render(filepath.Join(deployDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	var got []*unstructured.Unstructured
	var capacityArg, appendedArg string
	for _, o := range want {
		c := copyObject(t, o)
		switch {
		case c.GetKind() == "DaemonSet":
			ctrs := c.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
			for i, raw := range ctrs {
				ctr := raw.(map[string]any)
				if ctr["name"] != "csi-provisioner" {
					continue
				}
				args := ctr["args"].([]any)
				for j, a := range args {
					if a == "--enable-capacity=true" {
						args[j] = "--enable-capacity=false"
						capacityArg = fmt.Sprintf("spec.template.spec.containers[%d].args[%d]", i, j)
					}
				}
				appendedArg = fmt.Sprintf("spec.template.spec.containers[%d].args[%d]", i, len(args))
				ctr["args"] = append(args, "--extra=1")
			}
		case c.GetKind() == "StorageClass" && c.GetName() == "dirvol-retain":
			continue
		case c.GetKind() == "Namespace":
			labels := c.GetLabels()
			labels["helm.sh/chart"] = "dirvol-0.1.0"
			c.SetLabels(labels)
		}
		got = append(got, c)
	}
	if capacityArg == "" {
		t.Fatal("deploy/base's csi-provisioner has no --enable-capacity=true for this test to change")
	}
	diffs, err := Diff(want, got)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`apps/v1 DaemonSet dirvol/dirvol-node: ` + capacityArg + `: want "--enable-capacity=true", got "--enable-capacity=false"`,
		`apps/v1 DaemonSet dirvol/dirvol-node: ` + appendedArg + `: unexpected "--extra=1"`,
		`storage.k8s.io/v1 StorageClass dirvol-retain: missing (only in the first render)`,
		`v1 Namespace dirvol: metadata.labels["helm.sh/chart"]: unexpected "dirvol-0.1.0"`,
	} {
		found := false
		for _, d := range diffs {
			found = found || d == w
		}
		if !found {
			t.Errorf("Diff did not report\n  %s\nit reported:\n  %s", w, strings.Join(diffs, "\n  "))
		}
	}
	if len(diffs) != 4 {
		t.Errorf("Diff reported %d differences, want 4:\n  %s", len(diffs), strings.Join(diffs, "\n  "))
	}
}

// copyObject copies o through JSON (kustomize's output holds int values,
// which Unstructured.DeepCopy refuses).
func copyObject(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	c := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &c.Object); err != nil {
		t.Fatal(err)
	}
	return c
}
