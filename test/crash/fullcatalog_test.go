package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/testfs"
)

// TestCrashDeleteOnFullCatalog kills the driver in the middle of bursts of
// DeleteVolume while the filesystem holding its catalog is full (the delete
// intent is then rewritten in place): after every restart each volume is
// either listed with its data or reclaimed as its policy says, never lost
// or half-deleted, and a DeleteVolume that returned OK stays done. In the
// end every volume is deleted through the API, the filesystem still full.
func TestCrashDeleteOnFullCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the driver repeatedly")
	}
	// Mounted first so that it is unmounted last, after the harness has
	// stopped the driver.
	mnt := testfs.Mount(t, testfs.Ext4, 16<<20)
	h := newHarness(t)
	h.dataDir = filepath.Join(mnt, "data")
	poolDir := filepath.Join(h.root, "pool")
	h.extraArgs = []string{"--pool", "name=default,path=" + poolDir}
	h.start()

	type fullVol struct {
		id, name, policy string
		deleted          bool // DeleteVolume returned OK
	}
	var vols []*fullVol
	for i := range 60 {
		v := &fullVol{name: fmt.Sprintf("full-%02d", i), policy: policies[i%len(policies)]}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := h.proc.ctrl.CreateVolume(ctx, createRequest(&vol{name: v.name, policy: v.policy}))
		cancel()
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", v.name, err)
		}
		v.id = resp.GetVolume().GetVolumeId()
		if err := writeData(poolDir, v.id); err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v)
	}

	// check judges every volume after a restart.
	check := func(round int) {
		t.Helper()
		listed := listVolumes(t, h)
		archive, _ := os.ReadDir(filepath.Join(poolDir, "archive"))
		for _, v := range vols {
			dir := filepath.Join(poolDir, "volumes", v.id)
			_, isListed := listed[v.id]
			if isListed && v.deleted {
				t.Errorf("round %d: %s (%s) is listed after DeleteVolume returned OK", round, v.id, v.name)
			}
			if isListed {
				if err := checkData(dir, v.id); err != nil {
					t.Errorf("round %d: listed %s (%s) lost its data: %v", round, v.id, v.name, err)
				}
				continue
			}
			// Not listed: reclaimed as its policy says, nothing half-done.
			switch v.policy {
			case "delete":
				if exists(dir) {
					t.Errorf("round %d: %s (%s) is not listed but its directory is still there", round, v.id, v.name)
				}
			case "retain":
				if err := checkData(dir, v.id); err != nil {
					t.Errorf("round %d: retained %s (%s): %v", round, v.id, v.name, err)
				}
			case "archive":
				var n int
				for _, a := range archive {
					if strings.HasPrefix(a.Name(), v.name+"_") {
						n++
						if err := checkData(filepath.Join(poolDir, "archive", a.Name()), v.id); err != nil {
							t.Errorf("round %d: archived %s (%s): %v", round, v.id, v.name, err)
						}
					}
				}
				if n != 1 || exists(dir) {
					t.Errorf("round %d: %s (%s) is not listed, has %d archive entries and directory present %v", round, v.id, v.name, n, exists(dir))
				}
			}
			v.deleted = true // gone for good: a retry must answer OK
		}
	}

	rng := rand.New(rand.NewPCG(7, 11))
	for round := 0; ; round++ {
		var todo []*fullVol
		for _, v := range vols {
			if !v.deleted {
				todo = append(todo, v)
			}
		}
		if len(todo) == 0 {
			break
		}
		testfs.Fill(t, mnt) // take back what the deletes so far freed
		if round == 6 {     // enough kills: the rest is deleted without one
			for _, v := range todo {
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				_, err := h.proc.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id})
				cancel()
				if err != nil {
					t.Fatalf("DeleteVolume %s on a full catalog filesystem: %v", v.id, err)
				}
				v.deleted = true
			}
			continue
		}
		var wg sync.WaitGroup
		for _, v := range todo {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				defer cancel()
				_, err := h.proc.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id})
				switch {
				case err == nil:
					v.deleted = true
				case !h.proc.killed.Load():
					t.Errorf("DeleteVolume %s on a full catalog filesystem: %v", v.id, err)
				}
			})
		}
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		h.kill()
		wg.Wait()
		h.start()
		check(round)
		done := 0
		for _, v := range vols {
			if v.deleted {
				done++
			}
		}
		t.Logf("round %d: %d of %d volumes deleted", round, done, len(vols))
	}
	check(-1)
	if listed := listVolumes(t, h); len(listed) != 0 {
		t.Errorf("volumes left after deleting all: %v", listed)
	}
}
