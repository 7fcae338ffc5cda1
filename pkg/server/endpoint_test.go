package server

import "testing"

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name        string
		ep          string
		wantNetwork string
		wantAddress string
		wantErr     bool
	}{
		{name: "unix absolute", ep: "unix:///csi/csi.sock", wantNetwork: "unix", wantAddress: "/csi/csi.sock"},
		{name: "unix cleaned", ep: "unix:///csi//x/../csi.sock", wantNetwork: "unix", wantAddress: "/csi/csi.sock"},
		{name: "tcp host and port", ep: "tcp://127.0.0.1:10000", wantNetwork: "tcp", wantAddress: "127.0.0.1:10000"},
		{name: "tcp all interfaces", ep: "tcp://:10000", wantNetwork: "tcp", wantAddress: ":10000"},
		{name: "tcp ipv6", ep: "tcp://[::1]:10000", wantNetwork: "tcp", wantAddress: "[::1]:10000"},
		{name: "unix relative", ep: "unix://csi.sock", wantErr: true},
		{name: "unix empty", ep: "unix://", wantErr: true},
		{name: "tcp no port", ep: "tcp://127.0.0.1", wantErr: true},
		{name: "tcp empty port", ep: "tcp://127.0.0.1:", wantErr: true},
		{name: "no scheme", ep: "/csi/csi.sock", wantErr: true},
		{name: "unknown scheme", ep: "http://127.0.0.1:80", wantErr: true},
		{name: "empty", ep: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			network, address, err := ParseEndpoint(tc.ep)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseEndpoint(%q) = %q, %q; want an error", tc.ep, network, address)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tc.ep, err)
			}
			if network != tc.wantNetwork || address != tc.wantAddress {
				t.Errorf("ParseEndpoint(%q) = %q, %q; want %q, %q", tc.ep, network, address, tc.wantNetwork, tc.wantAddress)
			}
		})
	}
}
