package app

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/registration"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	regv1 "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	mount "k8s.io/mount-utils"
)

// A pool named default given as an image replaces the pool rooted at the
// data dir: New creates, formats and mounts the image under
// <data-dir>/pools/default, and the pool is btrfs.
func TestNewWithImageDefaultPool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("an image pool needs root to loop-mount")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skipf("mkfs.btrfs not installed: %v", err)
	}
	cfg := validConfig(t)
	mnt := filepath.Join(cfg.DataDir, "pools", "default")
	t.Cleanup(func() {
		for range 3 {
			if exec.Command("mountpoint", "-q", mnt).Run() != nil {
				return
			}
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mnt, err, out)
				return
			}
		}
	})
	cfg.Pools = pool.Specs{{Name: "default", Image: filepath.Join(cfg.DataDir, "images", "default.img"), Size: 256 << 20}}
	ctx := context.Background()
	d, err := New(ctx, cfg, mount.New(""))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer d.lock.Close()
	if roots := d.vols.Roots(); !slices.Equal(roots, []string{mnt}) {
		t.Errorf("pool roots %v, want [%s]", roots, mnt)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("statfs %s: type %#x, %v; want btrfs", mnt, st.Type, err)
	}
	if err := d.vols.Recover(ctx); err != nil {
		t.Errorf("Recover: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "volumes")); !os.IsNotExist(err) {
		t.Errorf("the data dir got a pool layout too: %v", err)
	}
}

// Run registers the driver with the kubelet once the CSI endpoint listens:
// a kubelet that calls GetInfo and then NodeGetInfo on the endpoint it was
// given finds the driver. Both sockets go at shutdown.
func TestRunRegistersWithKubelet(t *testing.T) {
	cfg := validConfig(t)
	csiSock := strings.TrimPrefix(cfg.Server.Endpoint, "unix://")
	regDir := t.TempDir()
	cfg.Registration = registration.Config{Dir: regDir, KubeletEndpoint: csiSock, CheckInterval: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := New(ctx, cfg, mount.NewFakeMounter(nil))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	regSock := filepath.Join(regDir, DefaultDriverName+"-reg.sock")
	callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
	defer callCancel()
	regConn, err := grpc.NewClient("unix://"+regSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer regConn.Close()
	info, err := regv1.NewRegistrationClient(regConn).GetInfo(callCtx, &regv1.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetName() != DefaultDriverName || info.GetEndpoint() != csiSock {
		t.Fatalf("GetInfo: name %q, endpoint %q; want %q, %q", info.GetName(), info.GetEndpoint(), DefaultDriverName, csiSock)
	}
	// As the kubelet: NodeGetInfo on the endpoint, with no waiting.
	csiConn, err := grpc.NewClient("unix://"+info.GetEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer csiConn.Close()
	node, err := csi.NewNodeClient(csiConn).NodeGetInfo(callCtx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatalf("NodeGetInfo right after GetInfo: %v", err)
	}
	if node.GetNodeId() != cfg.NodeID {
		t.Errorf("node ID %q, want %q", node.GetNodeId(), cfg.NodeID)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, sock := range []string{regSock, csiSock} {
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("%s left after shutdown: %v", sock, err)
		}
	}
}

// Entries in the catalog that the driver never writes (a non-empty
// directory named like an unfinished write, a record with an unknown state,
// an oversized sparse record) do not stop the driver: it starts, recovers,
// reports them and leaves them in place.
func TestStartWithStrayCatalogEntries(t *testing.T) {
	cfg := validConfig(t)
	vols := filepath.Join(cfg.catalogDir(), "volumes")
	if err := os.MkdirAll(filepath.Join(vols, ".tmp-vol-x-1", "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	id := "vol-0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(vols, id+".json"), []byte(`{"id":"`+id+`","name":"pv","state":"migrating"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(vols, "vol-fedcba9876543210fedcba9876543210.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx := context.Background()
	d, err := New(ctx, cfg, mount.NewFakeMounter(nil))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer d.lock.Close()
	if err := d.vols.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if p := d.vols.CatalogProblems(); len(p) != 3 {
		t.Errorf("CatalogProblems = %v, want 3", p)
	}
	if entries, _ := os.ReadDir(vols); len(entries) != 3 {
		t.Errorf("catalog holds %d entries, want the 3 left in place", len(entries))
	}
}
