// Package sanity runs the csi-test sanity suite in-process against the real
// dirvol services, real directories and real bind mounts.
package sanity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/cmd/driver/app"
	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/server"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	mount "k8s.io/mount-utils"
)

// idGen hands the suite IDs of the shape dirvol issues, so that "valid but
// unknown" IDs reach the lookup (NotFound) instead of the shape check.
type idGen struct{ sanity.DefaultIDGenerator }

func (idGen) GenerateUniqueValidVolumeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "vol-" + hex.EncodeToString(b[:])
}

func TestSanity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sanity suite bind-mounts volumes and needs root")
	}
	root := t.TempDir()
	// A third pool on a btrfs filesystem made for the test: the driver
	// detects it and serves it with the btrfs backend (subvolumes, quota
	// limits, btrfs snapshots). The image is sparse; 4 GiB leaves room for
	// the 1 GiB volumes the suite makes without a size.
	btrfsPool := filepath.Join(testfs.Mount(t, testfs.Btrfs, 4<<30), "pool")
	endpoint := "unix://" + filepath.Join(root, "csi.sock")
	cfg := app.Config{
		Server:             server.Config{Endpoint: endpoint, GracefulStopTimeout: 10 * time.Second},
		DriverName:         app.DefaultDriverName,
		Version:            "sanity",
		NodeID:             "sanity-node",
		DataDir:            filepath.Join(root, "data"),
		Pools:              pool.Specs{{Name: "extra", Path: filepath.Join(root, "extra")}, {Name: "btrfs", Path: btrfsPool}},
		MaxVolumes:         100,
		DefaultVolumeBytes: 1 << 30,
		UsageRefresh:       time.Minute,
		LoopSweep:          time.Minute,
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := app.New(ctx, cfg, mount.New(""))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("driver Run: %v", err)
		}
	})
	waitReady(t, endpoint)

	base := func(name string, params, mutable, snapParams map[string]string) *sanity.TestConfig {
		c := sanity.NewTestConfig()
		c.Address = endpoint
		c.TargetPath = filepath.Join(root, name+"-target")
		c.StagingPath = filepath.Join(root, name+"-staging")
		c.TestVolumeSize = 64 << 20
		// Expansion doubles the volume, rather than the suite's default of
		// adding 1 GiB, so that the pass also fits a small pool.
		c.TestVolumeExpandSize = 128 << 20
		c.IdempotentCount = 2
		c.IDGen = idGen{}
		c.TestVolumeParameters = params
		// The VolumeAttributesClass parameters of the suite's create and
		// modify calls (CreateVolume and ControllerModifyVolume).
		c.TestVolumeMutableParameters = mutable
		c.TestSnapshotParameters = snapParams
		return &c
	}
	// Three passes over the whole suite, snapshots, clones, expansion and
	// modification included: the defaults (onDelete delete, the default dir
	// pool) with a VolumeAttributesClass that switches to archive, every
	// StorageClass and VolumeSnapshotClass parameter set to something else
	// (another dir pool) with a class that switches back to delete, and the
	// btrfs pool with no class.
	contexts := []*sanity.TestContext{
		sanity.GinkgoTest(base("defaults", nil, map[string]string{"onDelete": "archive"}, nil)),
		sanity.GinkgoTest(base("parameters", map[string]string{
			"pool": "extra", "onDelete": "archive", "mode": "0770", "uid": "1000", "gid": "1000",
		}, map[string]string{"onDelete": "delete"}, map[string]string{
			"csi.storage.k8s.io/volumesnapshot/name":        "snap-1",
			"csi.storage.k8s.io/volumesnapshot/namespace":   "default",
			"csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-1",
		})),
		sanity.GinkgoTest(base("btrfs", map[string]string{"pool": "btrfs"}, nil, nil)),
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, "dirvol CSI sanity")
	for _, sc := range contexts {
		sc.Finalize()
	}
}

// waitReady polls Probe until the driver has recovered its catalog.
func waitReady(t *testing.T, endpoint string) {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := csi.NewIdentityClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Probe(context.Background(), &csi.ProbeRequest{})
		if err == nil && resp.GetReady().GetValue() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(errors.New("driver did not become ready within 30s"))
}
