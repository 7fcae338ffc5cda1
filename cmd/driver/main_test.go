package main

import (
	"bytes"
	"strings"
	"testing"
)

// A bad flag gets the error and a one-line hint, not the whole usage, and
// exits 2 without starting anything.
func TestRunBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"bad pool", []string{"--pool=bad"}, `pool "bad": "bad" is not key=value`},
		{"pool without path", []string{"--pool=name=fast"}, "-pool"},
		{"unknown flag", []string{"--bogus"}, "-bogus"},
		{"bad duration", []string{"--graceful-stop-timeout=soon"}, "graceful-stop-timeout"},
		{"positional argument", []string{"serve"}, `unexpected argument "serve"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[1], "--help") {
				t.Errorf("stderr:\n%s\nwant two lines: the error naming %q, then a hint to --help", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q, want nothing", stdout.String())
			}
		})
	}
}

func TestRunHelpAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("--help: exit status %d, want 0", code)
	}
	if !strings.Contains(stdout.String(), "-pool") || stderr.Len() != 0 {
		t.Errorf("--help: stdout %d bytes without -pool, or stderr %q", stdout.Len(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "dirvol ") {
		t.Errorf("--version: exit status %d, stdout %q", code, stdout.String())
	}
}
