package dirvolimage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The image runs: imported into a containerd of the test's own (state,
// socket and snapshots under a temporary directory, no CRI, no TCP
// listener), the driver and every tool the node code runs start from it.
// Containers get a network namespace with loopback only. Needs root,
// containerd, ctr and runc, and the recipe's tools (see
// TestBuildReproducible).
func TestImageRunsInContainerd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the image and starts containerd")
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "apt-get", "dpkg-deb", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	lock, err := DefaultLock()
	if err != nil {
		t.Fatal(err)
	}
	if rel := hostDebianRelease(); rel != lock.Release {
		t.Skipf("host is Debian %q, the lock pins Debian %s packages", rel, lock.Release)
	}
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := Build(ctx, Options{Root: repoRoot, Version: "v0.0.0-runs", Lock: lock, Cache: cache, Epoch: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	// Short: the socket path must fit in a sockaddr_un.
	dir, err := os.MkdirTemp("", "dvctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupMounts(t, dir); _ = os.RemoveAll(dir) })
	const ref = "dirvol.csi.dev/dirvol:runs"
	archive := filepath.Join(dir, "image.tar")
	if err := WriteArchive(archive, img, ref); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	ctd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	ctd.Stdout, ctd.Stderr = logFile, logFile
	if err := ctd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = ctd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = ctd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = ctd.Process.Kill()
			<-done
		}
	}
	defer stop()

	ctrCmd := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "--namespace", "dirvol-test"}, args...)...).CombinedOutput()
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := ctrCmd("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd did not answer within 30s:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := ctrCmd("images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{BinaryPath, "--version"}, "dirvol v0.0.0-runs"},
		{[]string{"mount", "--version"}, "mount from util-linux"},
		{[]string{"umount", "--version"}, "umount from util-linux"},
		{[]string{"losetup", "--version"}, "losetup from util-linux"},
		{[]string{"blkid", "--version"}, "blkid from util-linux"},
		{[]string{"mkfs.btrfs", "--version"}, "btrfs-progs"},
		{[]string{"btrfs", "--version"}, "btrfs-progs"},
	} {
		out, err := ctrCmd(append([]string{"run", "--rm", ref, fmt.Sprintf("dirvol-test-%d", i)}, tc.args...)...)
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s in the image: %v\n%s\nwant output with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	stop()
}

// cleanupMounts unmounts what containerd left mounted under dir, deepest
// first.
func cleanupMounts(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", m, err, out)
		}
	}
}
