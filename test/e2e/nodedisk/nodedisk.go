// Package nodedisk reaches a node's dirvol data directory, so that the tests
// check what a volume operation did on disk: directly on this host for the
// harness's nodes, through `docker exec` for kind's node containers.
package nodedisk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// NodeDisk reads and writes below one node's data directory. Every path is
// relative to that directory (slash-separated, e.g. "volumes/vol-..."). A
// missing path is an error that matches fs.ErrNotExist.
type NodeDisk interface {
	// IsDir reports whether rel is a directory (false for a file).
	IsDir(ctx context.Context, node, rel string) (bool, error)
	ReadFile(ctx context.Context, node, rel string) ([]byte, error)
	WriteFile(ctx context.Context, node, rel string, data []byte) error
	// ListDir returns the sorted names in rel.
	ListDir(ctx context.Context, node, rel string) ([]string, error)
}

// Local is a NodeDisk for nodes whose data directories are on this host:
// node name -> data directory.
type Local map[string]string

func (l Local) path(node, rel string) (string, error) {
	dir, ok := l[node]
	if !ok {
		return "", fmt.Errorf("no node %q", node)
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

func (l Local) IsDir(_ context.Context, node, rel string) (bool, error) {
	p, err := l.path(node, rel)
	if err != nil {
		return false, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	return fi.IsDir(), nil
}

func (l Local) ReadFile(_ context.Context, node, rel string) ([]byte, error) {
	p, err := l.path(node, rel)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func (l Local) WriteFile(_ context.Context, node, rel string, data []byte) error {
	p, err := l.path(node, rel)
	if err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

func (l Local) ListDir(_ context.Context, node, rel string) ([]string, error) {
	p, err := l.path(node, rel)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// DockerExec is a NodeDisk for kind: each node is a container named after
// the node, and DataDir is the driver's data directory inside it.
type DockerExec struct {
	DataDir string // "/var/lib/dirvol" for deploy/'s DaemonSet
}

// notExist is the exit code the scripts below use for a missing path.
const notExist = 3

// run runs a shell script in the node container with the absolute path as
// $1 and args as $2...; paths are arguments, never part of the script.
func (d DockerExec) run(ctx context.Context, node, rel, script string, stdin []byte, args ...string) ([]byte, error) {
	p := path.Join(d.DataDir, rel)
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", "-i", node, "sh", "-c",
		`test -e "$1" || test -L "$1" || exit 3; ` + script, "sh", p}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == notExist {
		return nil, fmt.Errorf("%s:%s: %w", node, p, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("docker exec %s on %s: %w: %s", script, node, err, stderr.String())
	}
	return out, nil
}

func (d DockerExec) IsDir(ctx context.Context, node, rel string) (bool, error) {
	out, err := d.run(ctx, node, rel, `if test -d "$1" && ! test -L "$1"; then echo dir; else echo other; fi`, nil)
	return strings.TrimSpace(string(out)) == "dir", err
}

func (d DockerExec) ReadFile(ctx context.Context, node, rel string) ([]byte, error) {
	return d.run(ctx, node, rel, `cat "$1"`, nil)
}

func (d DockerExec) WriteFile(ctx context.Context, node, rel string, data []byte) error {
	// The file may not exist yet: check its directory instead.
	_, err := d.run(ctx, node, path.Dir(rel), `cat > "$1/$2"`, data, path.Base(rel))
	return err
}

func (d DockerExec) ListDir(ctx context.Context, node, rel string) ([]string, error) {
	out, err := d.run(ctx, node, rel, `ls -1A "$1"`, nil)
	if err != nil {
		return nil, err
	}
	names := strings.Fields(string(out))
	sort.Strings(names)
	return names, nil
}
