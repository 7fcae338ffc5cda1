package server

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// endpointForms names the endpoint forms ParseEndpoint accepts, for error
// messages.
const endpointForms = "unix:///absolute/path/csi.sock or tcp://host:port"

// ParseEndpoint splits a CSI endpoint into the network and address that
// net.Listen takes. It accepts unix:///absolute/path/csi.sock and
// tcp://host:port (an empty host listens on every interface).
func ParseEndpoint(ep string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		return "", "", fmt.Errorf("endpoint %q has no scheme: use %s", ep, endpointForms)
	}
	switch scheme {
	case "unix":
		if !filepath.IsAbs(rest) {
			return "", "", fmt.Errorf("endpoint %q: the socket path must be absolute, as in unix:///csi/csi.sock", ep)
		}
		return "unix", filepath.Clean(rest), nil
	case "tcp":
		_, port, err := net.SplitHostPort(rest)
		if err != nil || port == "" {
			return "", "", fmt.Errorf("endpoint %q: want tcp://host:port, as in tcp://127.0.0.1:10000", ep)
		}
		return "tcp", rest, nil
	default:
		return "", "", fmt.Errorf("endpoint %q has unsupported scheme %q: use %s", ep, scheme, endpointForms)
	}
}
