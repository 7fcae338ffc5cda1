package registration

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"
)

// DefaultDir is where the kubelet's plugin watcher looks for registration
// sockets.
const DefaultDir = "/var/lib/kubelet/plugins_registry"

// kubeletPluginsDir is where, by convention, a CSI driver's socket lives on
// the host: <kubeletPluginsDir>/<driver-name>/csi.sock.
const kubeletPluginsDir = "/var/lib/kubelet/plugins"

// Config holds the settings of the registration server.
type Config struct {
	// Dir is the kubelet's plugin registration directory as this process
	// sees it; the socket <driver-name>-reg.sock is made there. Empty
	// disables registration: no kubelet runs here, or another process
	// registers the driver.
	Dir string
	// KubeletEndpoint is the path of the driver's CSI socket as the kubelet
	// sees it (the kubelet runs in the host's mount namespace, the driver
	// usually in a container with the socket directory mounted elsewhere).
	// Empty means /var/lib/kubelet/plugins/<driver-name>/csi.sock.
	KubeletEndpoint string
	// CheckInterval is how often the registration socket is checked to
	// still be in Dir; one that was removed is made again, so that the
	// kubelet registers the driver again.
	CheckInterval time.Duration
}

// AddFlags registers the Config fields as flags on fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "kubelet-registration-dir", DefaultDir,
		"The kubelet's plugin registration directory, where the driver registers itself with the kubelet. Empty disables registration.")
	fs.StringVar(&c.KubeletEndpoint, "kubelet-registration-path", "",
		"Path of the CSI socket as the kubelet sees it (default /var/lib/kubelet/plugins/<driver-name>/csi.sock).")
	fs.DurationVar(&c.CheckInterval, "kubelet-registration-check-interval", 10*time.Second,
		"How often the registration socket is checked to still exist; a removed one is made again.")
}

// Validate reports the first setting that is not usable. With Dir empty
// (disabled) the other settings are unused and not checked.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return nil
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("--kubelet-registration-dir %q must be an absolute path, as in %s, or empty to disable registration", c.Dir, DefaultDir)
	case c.KubeletEndpoint != "" && !filepath.IsAbs(c.KubeletEndpoint):
		return fmt.Errorf("--kubelet-registration-path %q must be an absolute path to a socket, as in %s/dirvol.csi.dev/csi.sock (no unix:// prefix)", c.KubeletEndpoint, kubeletPluginsDir)
	case c.CheckInterval <= 0:
		return fmt.Errorf("--kubelet-registration-check-interval %s must be positive, as in 10s", c.CheckInterval)
	}
	return nil
}

// maxSocketPath is the longest path a unix socket can be bound to on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// socketPath returns the registration socket of driverName in Dir.
func (c *Config) socketPath(driverName string) (string, error) {
	if driverName == "" || driverName == "." || driverName == ".." || filepath.Base(driverName) != driverName {
		return "", fmt.Errorf("driver name %q cannot name a registration socket: it must be a single path element", driverName)
	}
	p := filepath.Join(c.Dir, driverName+"-reg.sock")
	if len(p) > maxSocketPath {
		return "", fmt.Errorf("registration socket %s is %d bytes long, more than a unix socket path can hold (%d): choose a shorter --kubelet-registration-dir", p, len(p), maxSocketPath)
	}
	return p, nil
}

// kubeletEndpoint returns KubeletEndpoint or its default for driverName.
func (c *Config) kubeletEndpoint(driverName string) string {
	if c.KubeletEndpoint != "" {
		return filepath.Clean(c.KubeletEndpoint)
	}
	return filepath.Join(kubeletPluginsDir, driverName, "csi.sock")
}

// errNoDir is returned by listen when Dir does not exist (yet).
var errNoDir = errors.New("no kubelet registration directory")
