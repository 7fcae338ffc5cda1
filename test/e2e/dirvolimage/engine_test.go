package dirvolimage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEngine writes an executable named name into dir that logs its
// arguments to dir/calls and whose "info" exits with infoStatus.
func fakeEngine(t *testing.T, dir, name string, infoStatus int) {
	t.Helper()
	script := "#!/bin/sh\necho \"" + name + " $*\" >> \"" + filepath.Join(dir, "calls") + "\"\n" +
		"if [ \"$1\" = info ]; then exit " + string(rune('0'+infoStatus)) + "; fi\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestLoadIntoEngine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		engines   map[string]int // name -> exit status of "info"
		want      string
		wantCalls string
	}{
		{"none", nil, "", ""},
		// A docker client without a daemon: info fails, nothing is loaded.
		{"docker without daemon", map[string]int{"docker": 1}, "", "docker info"},
		{"docker", map[string]int{"docker": 0}, "docker", "docker info|docker load -i ARCHIVE"},
		{"podman when docker has no daemon", map[string]int{"docker": 1, "podman": 0}, "podman", "docker info|podman info|podman load -i ARCHIVE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, status := range tc.engines {
				fakeEngine(t, dir, name, status)
			}
			t.Setenv("PATH", dir)
			archive := filepath.Join(dir, "image.tar")
			got, err := LoadIntoEngine(context.Background(), archive)
			if err != nil || got != tc.want {
				t.Errorf("LoadIntoEngine = %q, %v; want %q", got, err, tc.want)
			}
			calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
			gotCalls := strings.ReplaceAll(strings.Join(strings.Fields(strings.ReplaceAll(string(calls), "\n", "|")), " "), archive, "ARCHIVE")
			if strings.TrimSuffix(gotCalls, "|") != tc.wantCalls {
				t.Errorf("engine calls %q, want %q", gotCalls, tc.wantCalls)
			}
		})
	}
}
