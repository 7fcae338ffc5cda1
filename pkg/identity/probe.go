package identity

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"
)

// probeLevel is the verbosity of Probe's own logging: the kubelet's
// liveness probe and the sidecars call it every few seconds.
const probeLevel = 5

// Probe reports whether the driver can serve: not while it is stopping, nor
// while ready returns an error. A driver that is not ready answers
// Ready=false rather than an error, so the caller can tell "alive but not
// ready" from "not answering". No lock: stopping is atomic and ready is
// responsible for its own safety.
func (s *Server) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	logger := klog.FromContext(ctx)
	if s.stopping.Load() {
		logger.V(probeLevel).Info("Not ready", "reason", "shutting down")
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
	}
	if s.ready != nil {
		if err := s.ready(); err != nil {
			logger.V(probeLevel).Info("Not ready", "reason", err.Error())
			return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
