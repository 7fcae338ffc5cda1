package framework

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/dirvol/dirvol/test/e2e/cluster"
)

// Run directories are /tmp/dirvol-e2e-*, each with the pid of the test
// process that made it. A run killed before its cleanup (go test -timeout,
// Ctrl-C, a closed pipe) leaves its directory and its nodes' tmpfs mounts;
// the next run removes those whose process is gone.

const (
	runDirPattern = "dirvol-e2e-*"
	pidFile       = "owner.pid"
)

// newRunDir makes a run directory owned by this process.
func newRunDir() (string, error) {
	dir, err := os.MkdirTemp("", runDirPattern)
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// removeStaleRunDirs unmounts and removes run directories whose owner has
// exited. Directories without an owner file are left alone. realNodeLock is
// the real nodes' lock file (RealNodeOptions.LockFile).
func removeStaleRunDirs(realNodeLock string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runDirPattern))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, pidFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // unreadable, or its owner still runs
		}
		// A real node's run also left processes, cgroups and host paths.
		_ = cluster.RemoveStaleRealNode(dir, realNodeLock)
		for _, m := range mountsUnder(dir) {
			_ = exec.Command("umount", m).Run()
		}
		if len(mountsUnder(dir)) == 0 {
			os.RemoveAll(dir)
		}
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			out = append([]string{fields[1]}, out...)
		}
	}
	return out
}
