// Command e2e-binaries builds (or finds in the cache) the pinned etcd,
// Kubernetes and CSI sidecar binaries the e2e tests run, and prints the
// directory that holds them. `make e2e` runs it before the tests so that a
// cold build shows its progress and does not count against the test timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dirvol/dirvol/test/e2e/binaries"
)

func main() {
	cache, err := binaries.DefaultCacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flag.StringVar(&cache, "cache", cache, "Cache directory (default: $DIRVOL_E2E_CACHE or ~/.cache/dirvol-e2e).")
	conformance := flag.Bool("conformance", false, "Also build the external storage suite's binaries (make conformance).")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := binaries.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	set, err := binaries.Ensure(ctx, filepath.Join(root, "build"), cache, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *conformance {
		if _, err := binaries.EnsureConformance(ctx, filepath.Join(root, "build"), cache, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println(filepath.Dir(set.Path(binaries.Etcd)))
}
