//go:build linux

package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/mountuse"
	"github.com/dirvol/dirvol/pkg/catalog"
	mount "k8s.io/mount-utils"
)

// TestDeleteRefusesMountedVolume bind-mounts a volume's directory (and, for
// a block volume, a loop device of its file) as the node service does, and
// checks that Delete refuses it with ErrInUse, naming the mount point, and
// changes nothing on disk; a block volume's file stays in use while the
// device is attached, mounted or not; once unmounted (and detached), Delete
// goes ahead.
func TestDeleteRefusesMountedVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts and loop devices need root")
	}
	mounter := mount.New("")
	loops := loopdev.New()
	for _, block := range []bool{false, true} {
		t.Run(map[bool]string{false: "directory", true: "block"}[block], func(t *testing.T) {
			e := newEnv(t)
			cat, _, err := catalog.Open(e.catDir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(cat, e.pools, "default", defaultCap, func() time.Time { return e.clock },
				WithUseChecker(mountuse.New(mounter, loops)))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			req := request("pv-1")
			req.OnDelete = OnDeleteDelete
			req.Block = block
			if block {
				req.RequiredBytes = 1 << 20
			}
			v := mustCreate(t, m, req)
			source, err := m.Path(v)
			if err != nil {
				t.Fatal(err)
			}
			device := ""
			if block {
				file, err := m.BlockPath(v)
				if err != nil {
					t.Fatal(err)
				}
				d, err := loops.Attach(file, loopdev.Options{})
				if err != nil {
					t.Skipf("no loop devices here: %v", err)
				}
				t.Cleanup(func() { _ = loops.Detach(d.Path) })
				source = d.Path
				device = d.Path
			} else {
				writeFile(t, filepath.Join(source, "data"), "live data")
			}
			target := filepath.Join(e.root, "pods", "pod-1", "mount")
			if block {
				writeFile(t, target, "")
			} else if err := os.MkdirAll(target, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := mounter.Mount(source, target, "", []string{"bind"}); err != nil {
				t.Fatal(err)
			}
			mounted := true
			t.Cleanup(func() {
				if mounted {
					_ = mounter.Unmount(target)
				}
			})
			before := tree(t, e.root)

			err = m.Delete(context.Background(), v.ID)
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), target) {
				t.Fatalf("Delete of a mounted volume = %v, want ErrInUse naming %s", err, target)
			}
			sameTree(t, "refused delete", before, tree(t, e.root))
			if got, err := m.Get(v.ID); err != nil || got.State != catalog.StateReady {
				t.Fatalf("Get after a refused delete = %v, %v; want the volume still ready", got, err)
			}

			if err := mounter.Unmount(target); err != nil {
				t.Fatal(err)
			}
			mounted = false
			if block {
				// The device is still attached to the file, though
				// mounted nowhere: still in use.
				before = tree(t, e.root)
				err = m.Delete(context.Background(), v.ID)
				if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), device) {
					t.Fatalf("Delete with a loop device attached = %v, want ErrInUse naming %s", err, device)
				}
				sameTree(t, "refused delete", before, tree(t, e.root))
				if err := loops.Detach(device); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Delete(context.Background(), v.ID); err != nil {
				t.Fatalf("Delete once unmounted: %v", err)
			}
		})
	}
}

// mountedFrom is a UseChecker that reports a mount from its n-th look on.
type mountedFrom struct {
	n     int
	looks int
}

func (m *mountedFrom) MountedAt(string, bool) ([]string, error) {
	m.looks++
	if m.looks >= m.n {
		return []string{"/pods/p/mount"}, nil
	}
	return nil, nil
}

// TestDeleteRacingPublish mounts the volume between Delete's first look and
// its record of "deleting", as a publish racing the delete would: Delete
// sees it on its second look, puts the volume back to ready and removes
// nothing.
func TestDeleteRacingPublish(t *testing.T) {
	e := newEnv(t)
	cat, _, err := catalog.Open(e.catDir)
	if err != nil {
		t.Fatal(err)
	}
	checker := &mountedFrom{n: 2}
	m, err := New(cat, e.pools, "default", defaultCap, func() time.Time { return e.clock }, WithUseChecker(checker))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := request("pv-1")
	req.OnDelete = OnDeleteArchive
	v := mustCreate(t, m, req)
	dir, err := m.Path(v)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "data"), "live data")
	before := without(tree(t, e.root), "catalog")

	err = m.Delete(context.Background(), v.ID)
	if !errors.Is(err, ErrInUse) || checker.looks != 2 {
		t.Fatalf("Delete = %v after %d looks, want ErrInUse on the second", err, checker.looks)
	}
	got, err := m.Get(v.ID)
	if err != nil || got.State != catalog.StateReady || got.ReclaimTarget != "" {
		t.Fatalf("Get after the refused delete = %+v, %v; want the volume ready as it was", got, err)
	}
	sameTree(t, "refused delete", before, without(tree(t, e.root), "catalog"))
}

// TestDeleteWhileHeld deletes a volume a publish holds: ErrBusy, nothing
// changed; once released, the delete goes ahead.
func TestDeleteWhileHeld(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	release, err := m.Hold(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, e.root)
	if err := m.Delete(context.Background(), v.ID); !errors.Is(err, ErrBusy) {
		t.Fatalf("Delete of a held volume = %v, want ErrBusy", err)
	}
	sameTree(t, "refused delete", before, tree(t, e.root))
	if _, err := m.Hold(v.ID); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Hold = %v, want ErrBusy", err)
	}
	release()
	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete once released: %v", err)
	}
}
