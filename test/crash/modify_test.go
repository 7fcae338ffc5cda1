package crash

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// modify changes the reclaim policy of v, a live volume of the worker, to
// policy through ControllerModifyVolume, as csi-resizer does for a
// VolumeAttributesClass. Until it returns, v.modifyTo says which policy is
// in flight: after a kill the volume may have either.
func (wl *workload) modify(v *vol, policy string) bool {
	wl.m.mu.Lock()
	v.modifyTo = policy
	wl.m.stats.modifies++
	wl.m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	if _, err := wl.ctrl.ControllerModifyVolume(ctx, modifyRequest(v.id, policy)); err != nil {
		return wl.failed("ControllerModifyVolume "+v.id+" ("+v.name+") to onDelete="+policy, err)
	}
	wl.m.mu.Lock()
	v.policy, v.modifyTo = policy, ""
	wl.m.stats.modifiesOK++
	wl.m.mu.Unlock()
	return true
}

func modifyRequest(id, policy string) *csi.ControllerModifyVolumeRequest {
	return &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: map[string]string{"onDelete": policy}}
}

// resolveUncertainModifies retries, as csi-resizer would, every modify cut
// off by the kill; checkInvariants has already seen that the volume kept
// one of the two policies.
func resolveUncertainModifies(t *testing.T, h *harness, m *model) {
	m.mu.Lock()
	var pending []*vol
	for _, v := range m.vols {
		if v.modifyTo != "" && v.state == live {
			pending = append(pending, v)
		}
	}
	m.mu.Unlock()
	for _, v := range pending {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		_, err := h.proc.ctrl.ControllerModifyVolume(ctx, modifyRequest(v.id, v.modifyTo))
		cancel()
		if err != nil {
			t.Errorf("retried ControllerModifyVolume %s (%s) to onDelete=%s after restart #%d: %v", v.id, v.name, v.modifyTo, h.starts, err)
			continue
		}
		m.mu.Lock()
		v.policy, v.modifyTo = v.modifyTo, ""
		m.stats.modifyRetries++
		m.mu.Unlock()
	}
}
