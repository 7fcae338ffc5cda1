package app

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/registration"
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
		LoopSweep:          time.Minute,
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
		{"zero loop sweep interval", func(c *Config) { c.LoopSweep = 0 }, "--loop-sweep"},
		{"bad endpoint", func(c *Config) { c.Server.Endpoint = "http://x" }, "endpoint"},
		{"relative kubelet registration dir", func(c *Config) {
			c.Registration = registration.Config{Dir: "plugins_registry", CheckInterval: time.Second}
		}, "--kubelet-registration-dir"},
		{"pool inside the data dir's volumes", func(c *Config) {
			c.Pools = pool.Specs{{Name: "x", Path: c.DataDir + "/volumes/x"}}
		}, "overlap"},
		{"pool beside the data dir's managed directories", func(c *Config) {
			c.Pools = pool.Specs{{Name: "x", Path: c.DataDir + "/x"}}
		}, ""},
		{"pool holding the catalog", func(c *Config) {
			c.Pools = pool.Specs{{Name: "default", Path: c.DataDir + "/catalog"}}
		}, "catalog"},
		{"pool named default replaces the data dir's", func(c *Config) {
			c.Pools = pool.Specs{{Name: "default", Path: "/elsewhere"}}
		}, ""},
		{"pool named default twice", func(c *Config) {
			c.Pools = pool.Specs{{Name: "default", Path: "/elsewhere"}, {Name: "default", Path: "/other"}}
		}, "twice"},
		{"image pool under the data dir", func(c *Config) {
			c.Pools = pool.Specs{{Name: "img", Image: c.DataDir + "/images/img.img", Size: 1 << 30}}
		}, ""},
		{"image pool mounted in the data dir's volumes", func(c *Config) {
			c.Pools = pool.Specs{{Name: "img", Image: "/i/img.img", Size: 1 << 30, Path: c.DataDir + "/volumes/img"}}
		}, "overlap"},
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

func TestPoolSpecs(t *testing.T) {
	c := validConfig(t)
	c.Pools = pool.Specs{{Name: "img", Image: "/i/img.img", Size: 1 << 30}, {Name: "fast", Path: "/mnt/fast"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []pool.Spec{
		{Name: "default", Path: c.DataDir, Shared: true},
		{Name: "img", Image: "/i/img.img", Size: 1 << 30, Path: filepath.Join(c.DataDir, "pools", "img")},
		{Name: "fast", Path: "/mnt/fast"},
	}
	if got := c.poolSpecs(); !reflect.DeepEqual(got, want) {
		t.Errorf("poolSpecs = %+v\nwant %+v", got, want)
	}

	// A pool named default, here an image pool, replaces the one rooted
	// at the data dir.
	c.Pools = pool.Specs{{Name: "default", Image: "/i/default.img", Size: 1 << 30}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want = []pool.Spec{{Name: "default", Image: "/i/default.img", Size: 1 << 30, Path: filepath.Join(c.DataDir, "pools", "default")}}
	if got := c.poolSpecs(); !reflect.DeepEqual(got, want) {
		t.Errorf("poolSpecs = %+v\nwant %+v", got, want)
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
