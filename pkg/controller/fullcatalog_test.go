package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/pool"
	"google.golang.org/grpc/codes"
)

// When the filesystem holding the catalog is full, CreateVolume and
// CreateSnapshot answer ResourceExhausted naming that filesystem and change
// nothing, and DeleteVolume still works, so that space can be freed through
// the API, also after a restart.
func TestFullCatalogFilesystem(t *testing.T) {
	for _, tt := range []struct {
		name string
		// samePools puts the pools on the catalog's filesystem, as one
		// data directory does; otherwise they are elsewhere.
		samePools bool
	}{
		{name: "pools elsewhere"},
		{name: "pools on the same filesystem", samePools: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mnt := testfs.Mount(t, testfs.Ext4, 16<<20)
			root, catDir := t.TempDir(), filepath.Join(mnt, "catalog")
			if tt.samePools {
				root = filepath.Join(mnt, "pools")
			}
			same := func(p pool.Pool) pool.Pool { return p }
			e := newEnvAt(t, root, catDir, same)
			ctx := context.Background()
			del := e.create(t, "pv-del", nil).GetVolumeId()
			arch := e.create(t, "pv-arch", map[string]string{"onDelete": "archive"}).GetVolumeId()
			keep := e.create(t, "pv-keep", nil).GetVolumeId()
			snap := e.snapshot(t, "snap-keep", keep).GetSnapshotId()
			testfs.Fill(t, mnt)

			before, beforeRoot := tree(t, mnt), tree(t, root)
			_, err := e.srv.CreateVolume(ctx, createReq("pv-new", nil))
			wantCode(t, err, codes.ResourceExhausted)
			if !tt.samePools { // else the pool's own free space says no first
				wantMessage(t, err, catDir)
			}
			_, err = e.srv.CreateSnapshot(ctx, snapReq("snap-new", keep))
			wantCode(t, err, codes.ResourceExhausted)
			wantMessage(t, err, catDir)
			if d := disktree.Diff(before, tree(t, mnt)); len(d) > 0 {
				t.Errorf("refused requests changed the catalog filesystem: %v", d)
			}
			if d := disktree.Diff(beforeRoot, tree(t, root)); len(d) > 0 {
				t.Errorf("refused requests changed the pools: %v", d)
			}

			for _, id := range []string{del, arch} {
				if _, err := e.srv.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
					t.Fatalf("DeleteVolume(%s) on a full catalog filesystem: %v", id, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(root, "default", "volumes", del)); !os.IsNotExist(err) {
				t.Errorf("deleted volume's directory: %v", err)
			}
			if archived, _ := os.ReadDir(filepath.Join(root, "default", "archive")); len(archived) != 1 {
				t.Errorf("archive holds %d entries, want the archived volume", len(archived))
			}

			// A restart reads the same catalog: the deletes stay done and
			// what was kept is intact.
			e = newEnvAt(t, root, catDir, same)
			list, err := e.srv.ListVolumes(ctx, &csi.ListVolumesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if got := list.GetEntries(); len(got) != 1 || got[0].GetVolume().GetVolumeId() != keep {
				t.Errorf("after restart ListVolumes = %v, want only %s", got, keep)
			}
			if _, err := e.srv.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: snap}); err != nil {
				t.Errorf("snapshot after restart: %v", err)
			}
			// The snapshot's delete intent is recorded in place too.
			if _, err := e.srv.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap}); err != nil {
				t.Errorf("DeleteSnapshot on a full catalog filesystem: %v", err)
			}
		})
	}
}
