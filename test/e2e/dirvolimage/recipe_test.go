package dirvolimage

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/test/e2e/manifests"
)

var repoRoot = filepath.Join("..", "..", "..")

// dockerfile is what the Dockerfile's final stage installs and runs.
type dockerfile struct {
	debianRelease string   // FROM debian:12.x-slim -> "12"
	packages      []string // apt-get install arguments
	binary        string   // COPY --from=build ... <dst>
	entrypoint    []string
}

// parseDockerfile reads the instructions of the final stage (continuation
// lines joined).
func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var instrs []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	var d dockerfile
	fromDebian := regexp.MustCompile(`^FROM debian:(\d+)[.\d]*-slim\b`)
	for _, in := range instrs {
		fields := strings.Fields(in)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			d = dockerfile{} // a new stage: only the last one is the image
			if m := fromDebian.FindStringSubmatch(in); m != nil {
				d.debianRelease = m[1]
			}
		case "RUN":
			for _, cmd := range strings.Split(in, "&&") {
				f := strings.Fields(cmd)
				i := slices.Index(f, "install")
				if i < 0 || !slices.Contains(f[:i], "apt-get") {
					continue
				}
				for _, a := range f[i+1:] {
					if !strings.HasPrefix(a, "-") {
						d.packages = append(d.packages, a)
					}
				}
			}
		case "COPY":
			if len(fields) == 4 && strings.HasPrefix(fields[1], "--from=") {
				d.binary = fields[3]
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(in, fields[0]))), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile ENTRYPOINT: %v", err)
			}
		}
	}
	return d
}

// The Dockerfile and the engine-free recipe make the same image: the same
// Debian release and packages, the binary at the same path, run the same
// way.
func TestDockerfileMatchesRecipe(t *testing.T) {
	d := parseDockerfile(t)
	if !slices.Equal(d.packages, NodePackages) {
		t.Errorf("Dockerfile installs %v, the recipe (NodePackages) %v", d.packages, NodePackages)
	}
	if d.binary != BinaryPath {
		t.Errorf("Dockerfile copies the driver to %q, the recipe to %q", d.binary, BinaryPath)
	}
	if !slices.Equal(d.entrypoint, []string{BinaryPath}) {
		t.Errorf("Dockerfile ENTRYPOINT %v, want [%s]", d.entrypoint, BinaryPath)
	}
	lock, err := DefaultLock()
	if err != nil {
		t.Fatal(err)
	}
	if d.debianRelease != lock.Release {
		t.Errorf("Dockerfile's final stage is Debian %q, debian-packages.lock is Debian %q", d.debianRelease, lock.Release)
	}
}

// bin/ (build output and kind's kubeconfig) stays out of the Dockerfile's
// build context.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatalf("no .dockerignore: %v", err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.Trim(line, "/"))
		}
	}
	for _, want := range []string{"bin", ".git"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s/ (patterns %v)", want, patterns)
		}
	}
}

// What `make image` tags the archive with is what every deploy/
// kustomization runs, so that a loaded archive is found by the kubelet
// (no ImagePullBackOff).
func TestDeployRunsTheImageMakeBuilds(t *testing.T) {
	ref, err := DefaultReference(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	deploy := filepath.Join(repoRoot, "deploy")
	dirs, err := manifests.Kustomizations(deploy)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, dir := range dirs {
		objs, err := manifests.Render(filepath.Join(deploy, dir))
		if err != nil {
			t.Fatal(err)
		}
		c, ok, err := manifests.Container(objs, "dirvol-node", "dirvol")
		if err != nil || !ok {
			continue // an overlay without the driver (snapshot-controller)
		}
		found++
		if c.Image != ref {
			t.Errorf("deploy/%s runs image %q, make image builds %q", dir, c.Image, ref)
		}
	}
	if found == 0 {
		t.Fatal("no kustomization in deploy/ runs the dirvol container")
	}
	// make image passes no reference of its own unless IMAGE is set.
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	out, err := exec.Command("make", "-s", "-n", "-C", repoRoot, "image", "IMAGE=", "VERSION=v0").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "./cmd/dirvol-image") || regexp.MustCompile(`\s-image[\s=]`).Match(out) {
		t.Errorf("make -n image runs %q: want cmd/dirvol-image without -image, so that it takes deploy/base's reference", out)
	}
}
