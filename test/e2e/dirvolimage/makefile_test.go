package dirvolimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// make clean removes build output, but not the kubeconfig of a kind cluster
// that still runs (nor the kind binary that deletes it).
func TestMakeCleanKeepsKindCluster(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		files    []string
		kept     []string
		removed  []string
		noBinDir bool
	}{
		{
			name:    "kind cluster up",
			files:   []string{"bin/dirvol", "bin/dirvol-image.tar", "bin/kind/kubeconfig", "bin/kind/kind-config.yaml", "bin/tools/kind"},
			kept:    []string{"bin/kind/kubeconfig", "bin/kind/kind-config.yaml", "bin/tools/kind"},
			removed: []string{"bin/dirvol", "bin/dirvol-image.tar"},
		},
		{
			name:     "no cluster",
			files:    []string{"bin/dirvol", "bin/tools/kind"},
			noBinDir: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "Makefile"), makefile, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				p := filepath.Join(dir, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command("make", "-C", dir, "clean").CombinedOutput(); err != nil {
				t.Fatalf("make clean: %v\n%s", err, out)
			}
			for _, f := range tc.kept {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("make clean removed %s", f)
				}
			}
			for _, f := range tc.removed {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("make clean left %s", f)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "bin")); tc.noBinDir && err == nil {
				t.Error("make clean left bin/ without a kind cluster")
			}
		})
	}
}
