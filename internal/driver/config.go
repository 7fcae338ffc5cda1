// Package driver wires dirvol together: it turns a Config into the catalog,
// pools, volume core and the three CSI services on one gRPC server, and runs
// them. cmd/driver parses flags into a Config; the sanity suite builds one
// directly.
package driver

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/server"
)

// DefaultDriverName is the CSI driver name when none is given.
const DefaultDriverName = "dirvol.csi.dev"

// Config holds every setting of a dirvol process.
type Config struct {
	// Server holds the gRPC endpoint, HTTP endpoint and shutdown settings.
	Server server.Config
	// DriverName is the CSI driver name (GetPluginInfo, CSIDriver object).
	DriverName string
	// Version is reported by GetPluginInfo.
	Version string
	// NodeID identifies this node; volumes made here carry it as topology.
	NodeID string
	// DataDir holds the catalog and is the root of the pool named
	// "default".
	DataDir string
	// Pools are extra pools beside the default one.
	Pools pool.Specs
	// MaxVolumes is reported by NodeGetInfo; 0 means no limit.
	MaxVolumes int64
	// DefaultVolumeBytes is the size of a volume whose request names none.
	DefaultVolumeBytes int64
	// UsageRefresh is how often every volume's usage is measured for
	// capacity reporting.
	UsageRefresh time.Duration
}

// AddFlags registers the settings as flags on fs. NodeID's default is left
// to the caller, which knows the hostname.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	c.Server.AddFlags(fs)
	fs.StringVar(&c.DriverName, "driver-name", DefaultDriverName, "CSI driver name.")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "This node's ID (default: the hostname).")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/dirvol", "Directory for the catalog; also the root of the pool named \"default\".")
	fs.Var(&c.Pools, "pool", "Extra pool as name=NAME,path=DIR (repeatable).")
	fs.Int64Var(&c.MaxVolumes, "max-volumes", 0, "Most volumes this node accepts, reported by NodeGetInfo; 0 means no limit.")
	fs.Int64Var(&c.DefaultVolumeBytes, "default-volume-bytes", 1<<30, "Size of a volume whose request names none.")
	fs.DurationVar(&c.UsageRefresh, "usage-refresh", time.Minute, "How often volume usage is measured for GetCapacity.")
}

// Validate reports the first setting that is not usable.
func (c *Config) Validate() error {
	if err := c.Server.Validate(); err != nil {
		return err
	}
	switch {
	case c.DriverName == "":
		return errors.New("--driver-name must not be empty")
	case c.NodeID == "":
		return errors.New("--node-id must not be empty")
	case !filepath.IsAbs(c.DataDir):
		return fmt.Errorf("--data-dir %q must be an absolute path", c.DataDir)
	case c.MaxVolumes < 0:
		return fmt.Errorf("--max-volumes %d must not be negative", c.MaxVolumes)
	case c.DefaultVolumeBytes <= 0:
		return fmt.Errorf("--default-volume-bytes %d must be positive", c.DefaultVolumeBytes)
	case c.UsageRefresh <= 0:
		return fmt.Errorf("--usage-refresh %s must be positive", c.UsageRefresh)
	}
	return pool.ValidateSpecs(c.poolSpecs())
}

// defaultPool is the name of the pool rooted at DataDir.
const defaultPool = "default"

func (c *Config) poolSpecs() []pool.Spec {
	return append([]pool.Spec{{Name: defaultPool, Path: filepath.Clean(c.DataDir)}}, c.Pools...)
}
