package driver

import (
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/server"
)

func validConfig(t *testing.T) Config {
	return Config{
		Server:             server.Config{Endpoint: "unix://" + t.TempDir() + "/csi.sock", GracefulStopTimeout: time.Second},
		DriverName:         DefaultDriverName,
		NodeID:             "n1",
		DataDir:            t.TempDir(),
		DefaultVolumeBytes: 1 << 30,
		UsageRefresh:       time.Minute,
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no node ID", func(c *Config) { c.NodeID = "" }, "--node-id"},
		{"relative data dir", func(c *Config) { c.DataDir = "data" }, "--data-dir"},
		{"negative max volumes", func(c *Config) { c.MaxVolumes = -1 }, "--max-volumes"},
		{"zero default size", func(c *Config) { c.DefaultVolumeBytes = 0 }, "--default-volume-bytes"},
		{"bad endpoint", func(c *Config) { c.Server.Endpoint = "http://x" }, "endpoint"},
		{"pool inside the data dir", func(c *Config) {
			c.Pools = pool.Specs{{Name: "x", Path: c.DataDir + "/x"}}
		}, "overlap"},
		{"pool named default", func(c *Config) {
			c.Pools = pool.Specs{{Name: "default", Path: "/elsewhere"}}
		}, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second lock = %v, want an in-use error", err)
	}
	first.Close()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}
