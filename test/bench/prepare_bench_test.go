package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// prepare returns the driver binary and a data dir holding n volumes, making
// each once per process.
func prepare(b *testing.B, n int) (bin, data string) {
	b.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.root == "" {
		root, err := os.MkdirTemp("", "dirvol-bench-")
		if err != nil {
			b.Fatal(err)
		}
		shared.root, shared.data = root, make(map[int]string)
		logFilesystem(b, root)
	}
	if shared.bin == "" {
		shared.bin = build(b, filepath.Join(shared.root, "dirvol"))
	}
	if d, ok := shared.data[n]; ok {
		return shared.bin, d
	}
	d := filepath.Join(shared.root, fmt.Sprintf("data-%d", n))
	if err := os.RemoveAll(d); err != nil { // left by a failed run
		b.Fatal(err)
	}
	populate(b, d, n)
	shared.data[n] = d
	return shared.bin, d
}

// build compiles cmd/driver the way `make build` does.
func build(b *testing.B, out string) string {
	b.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/dirvol/dirvol/cmd/driver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, output)
	}
	return out
}

// populate makes n volumes in data dir d through the volume core, laid out
// as the driver lays out its data dir (the catalog under catalog/, the pool
// "default" at the root), then flushes the filesystem so that the first
// start does not wait on its writeback. The benchmark checks the layout
// through ListVolumes.
func populate(b *testing.B, d string, n int) {
	b.Helper()
	cat, problems, err := catalog.Open(filepath.Join(d, "catalog"))
	if err != nil || len(problems) != 0 {
		b.Fatalf("catalog.Open: %v, problems %v", err, problems)
	}
	p, err := pool.NewDir("default", d)
	if err != nil {
		b.Fatal(err)
	}
	m, err := volume.New(cat, map[string]pool.Pool{"default": p}, "default", 1<<30, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	// The zero logger discards: recovery's summary stays out of the figures.
	ctx := klog.NewContext(context.Background(), klog.Logger{})
	if err := m.Recover(ctx); err != nil {
		b.Fatal(err)
	}
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			_, err := m.Create(ctx, provisioned(i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("create volumes: %v", err)
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatalf("syncfs %s: %v", d, err)
	}
}

// provisioned is the request the external provisioner, run with
// --extra-create-metadata, sends for the i-th PVC: small, so that 10,000 fit
// in what the filesystem can promise.
func provisioned(i int) volume.CreateRequest {
	pv := fmt.Sprintf("pvc-%08x-0000-4000-8000-%012x", i, i)
	ns, pvc := fmt.Sprintf("team-%d", i%50), fmt.Sprintf("data-%d", i)
	return volume.CreateRequest{
		Name:          pv,
		RequiredBytes: 1 << 20,
		OnDelete:      volume.OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
		Parameters: map[string]string{
			"onDelete":                         "delete",
			"csi.storage.k8s.io/pvc/name":      pvc,
			"csi.storage.k8s.io/pvc/namespace": ns,
			"csi.storage.k8s.io/pv/name":       pv,
		},
		PVCNamespace: ns,
		PVCName:      pvc,
		PVName:       pv,
	}
}

// logFilesystem logs the filesystem that dir is on.
func logFilesystem(b *testing.B, dir string) {
	b.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatalf("statfs %s: %v", dir, err)
	}
	names := map[uint32]string{
		unix.TMPFS_MAGIC: "tmpfs", unix.EXT4_SUPER_MAGIC: "ext2/3/4", unix.XFS_SUPER_MAGIC: "xfs",
		unix.BTRFS_SUPER_MAGIC: "btrfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", 0x2fc12fc1: "zfs",
	}
	name, ok := names[uint32(st.Type)]
	if !ok {
		name = "unknown"
	}
	b.Logf("data dirs under %s: filesystem %s (statfs magic 0x%x)", os.TempDir(), name, uint32(st.Type))
}
