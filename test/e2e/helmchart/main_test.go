package helmchart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/binaries"
)

var (
	// helm is the pinned helm, built (once, cached) from the module proxy.
	helm Helm
	// chartDir is charts/dirvol, deployDir the repository's deploy/.
	chartDir, deployDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := binaries.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmchart:", err)
		return 1
	}
	cache, err := binaries.DefaultCacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmchart:", err)
		return 1
	}
	bin, err := binaries.EnsureHelm(context.Background(), filepath.Join(root, "build"), cache, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmchart: build helm:", err)
		return 1
	}
	home, err := os.MkdirTemp("", "dirvol-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmchart:", err)
		return 1
	}
	defer os.RemoveAll(home)
	helm = Helm{Bin: bin, Home: home}
	chartDir = filepath.Join(root, "..", "..", "charts", "dirvol")
	deployDir = filepath.Join(root, "..", "..", "deploy")
	return m.Run()
}
