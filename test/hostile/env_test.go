package hostile

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/cmd/driver/app"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// env is one running driver: the default pool at data, a second pool at
// extra, and a sentinel tree at outside that no request may ever touch.
type env struct {
	root, data, extra, outside string
	mounter                    mount.Interface
	ctrl                       csi.ControllerClient
	node                       csi.NodeClient
}

// start runs the real driver in-process on a socket under a fresh temporary
// directory. When the test ends it stops the driver, checks that the
// sentinel tree is as it was planted, and unmounts (and reports) anything
// still mounted under the directory.
func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, nil)
}

// startWith is start with the configuration changed by configure first.
func startWith(t *testing.T, configure func(e *env, cfg *app.Config)) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the hostile-input tests bind-mount volumes and need root")
	}
	root := t.TempDir()
	e := &env{root: root, data: filepath.Join(root, "data"), extra: filepath.Join(root, "extra"),
		outside: filepath.Join(root, "outside"), mounter: mount.New("")}
	plantSentinel(t, e.outside)
	sentinel := snapshot(t, e.outside)

	endpoint := "unix://" + filepath.Join(root, "csi.sock")
	cfg := app.Config{
		Server:             server.Config{Endpoint: endpoint, GracefulStopTimeout: 10 * time.Second},
		DriverName:         app.DefaultDriverName,
		Version:            "hostile",
		NodeID:             "hostile-node",
		DataDir:            e.data,
		Pools:              pool.Specs{{Name: "extra", Path: e.extra}},
		DefaultVolumeBytes: 1 << 20,
		UsageRefresh:       time.Hour,
		LoopSweep:          time.Minute,
	}
	if configure != nil {
		configure(e, &cfg)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d, err := app.New(runCtx, cfg, e.mounter)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("driver Run: %v", err)
		}
		e.unmountAll(t)
		e.detachAll(t)
		if diff := sentinel.diff(snapshot(t, e.outside)); len(diff) > 0 {
			t.Errorf("the sentinel tree outside the data dir changed:\n%s", strings.Join(diff, "\n"))
		}
	})
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.ctrl, e.node = csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	ident := csi.NewIdentityClient(conn)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := ident.Probe(ctx, &csi.ProbeRequest{}); err == nil && resp.GetReady().GetValue() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("driver did not become ready within 30s")
		}
	}
	return e
}

// plantSentinel makes the files a path traversal would aim at.
func plantSentinel(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"etc", "home/user"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
	writeFile(t, filepath.Join(dir, "etc/shadow"), "root:*:19000:0:99999:7:::\n")
	writeFile(t, filepath.Join(dir, "home/user/notes.txt"), "do not delete\n")
	if err := os.Symlink("passwd", filepath.Join(dir, "etc/passwd-link")); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

// tree maps each path under a root (relative; "." is the root) to its type,
// mode, owner, and for regular files size and SHA-256, for symbolic links
// the target. Mount points under the root appear as "mount:<path>".
type tree map[string]string

func snapshot(t *testing.T, root string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%s %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha256=%x", len(data), sha256.Sum256(data))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	mps, err := mount.New("").List()
	if err != nil {
		t.Fatalf("list mounts: %v", err)
	}
	for _, mp := range mps {
		if rel, err := filepath.Rel(root, mp.Path); err == nil && !strings.HasPrefix(rel, "..") {
			out["mount:"+rel] += mp.Device + " " + strings.Join(mp.Opts, ",") + ";"
		}
	}
	return out
}

func (e *env) snap(t *testing.T) tree { return snapshot(t, e.root) }

// diff lists what differs between before and after, except at the allowed
// paths (relative to the root) and below them.
func (before tree) diff(after tree, allowed ...string) []string {
	ok := func(p string) bool {
		p = strings.TrimPrefix(p, "mount:")
		return slices.ContainsFunc(allowed, func(a string) bool { return p == a || strings.HasPrefix(p, a+"/") })
	}
	var out []string
	for p, b := range before {
		if a, found := after[p]; !found && !ok(p) {
			out = append(out, fmt.Sprintf("removed %s (%s)", p, b))
		} else if found && a != b && !ok(p) {
			out = append(out, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p, a := range after {
		if _, found := before[p]; !found && !ok(p) {
			out = append(out, fmt.Sprintf("added %s (%s)", p, a))
		}
	}
	sort.Strings(out)
	return out
}

// unchanged fails the test if anything under the root differs from before,
// apart from the allowed paths (absolute or relative to the root).
func (e *env) unchanged(t *testing.T, before tree, allowed ...string) {
	t.Helper()
	for i, a := range allowed {
		if rel, err := filepath.Rel(e.root, a); err == nil && filepath.IsAbs(a) {
			allowed[i] = rel
		}
	}
	if diff := before.diff(e.snap(t), allowed...); len(diff) > 0 {
		t.Errorf("the disk changed:\n%s", strings.Join(diff, "\n"))
	}
}

// unmountAll unmounts everything under the root, deepest first, and fails
// the test for each mount it finds: every test unpublishes what it published.
func (e *env) unmountAll(t *testing.T) {
	t.Helper()
	for {
		mps, err := e.mounter.List()
		if err != nil {
			t.Errorf("list mounts: %v", err)
			return
		}
		var under []string
		for _, mp := range mps {
			if strings.HasPrefix(mp.Path, e.root+"/") || mp.Path == e.root {
				under = append(under, mp.Path)
			}
		}
		if len(under) == 0 {
			return
		}
		sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
		t.Errorf("mount left behind at %s", under[0])
		if err := e.mounter.Unmount(under[0]); err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
	}
}

// detachAll reports and detaches the loop devices still attached to files
// under the env's directory, before the test's directory is removed (a
// device left attached would outlive its file).
func (e *env) detachAll(t *testing.T) {
	t.Helper()
	loops := loopdev.New()
	devs, err := loops.List()
	if err != nil {
		if _, statErr := os.Stat("/dev/loop-control"); statErr == nil {
			t.Errorf("list loop devices: %v", err)
		}
		return
	}
	for _, d := range devs {
		if !mount.PathWithinBase(d.BackingFile, e.root) {
			continue
		}
		if d.Autoclear {
			// Being detached; give the program holding it a moment.
			time.Sleep(100 * time.Millisecond)
			if found, _ := loops.Find(d.BackingFile); len(found) == 0 {
				continue
			}
		}
		t.Errorf("loop device %s left attached to %s", d.Path, d.BackingFile)
		if err := loops.Detach(d.Path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// wantStatus checks the code of err and, for an error, that its message is
// not empty and holds every one of words.
func wantStatus(t *testing.T, err error, want codes.Code, words ...string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != want {
		t.Errorf("code %s (%q), want %s", s.Code(), s.Message(), want)
		return
	}
	if want == codes.OK {
		return
	}
	if strings.TrimSpace(s.Message()) == "" {
		t.Errorf("%s with an empty message", want)
	}
	for _, w := range words {
		if !strings.Contains(s.Message(), w) {
			t.Errorf("message %.300q does not say %q", s.Message(), w)
		}
	}
}

// echoed is how a message names a request field it echoes: the field's
// first 64 characters, Go-escaped, as %.64q prints them, without the quotes
// (a longer echo of the same field still contains it).
func echoed(field string) string {
	q := fmt.Sprintf("%.64q", field)
	return q[1 : len(q)-1]
}

// create makes a volume and returns its ID and directory.
func (e *env) create(t *testing.T, name string, params map[string]string) (string, string) {
	t.Helper()
	resp, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: rwCaps(), Parameters: params})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	v := resp.GetVolume()
	root := e.data
	if v.GetVolumeContext()["pool"] == "extra" {
		root = e.extra
	}
	dir := filepath.Join(root, "volumes", v.GetVolumeId())
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("volume %s: directory %s: %v", v.GetVolumeId(), dir, err)
	}
	return v.GetVolumeId(), dir
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func fsTypeCap(fsType string) *csi.VolumeCapability {
	c := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	c.GetMount().FsType = fsType
	return c
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func rwCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
}
