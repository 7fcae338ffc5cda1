package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/dirvol/dirvol/pkg/catalog"
	"k8s.io/klog/v2"
)

// ModifyRequest is a validated ControllerModifyVolume: the properties of an
// existing volume to change. A zero field leaves the property as it is.
type ModifyRequest struct {
	// OnDelete replaces the reclaim policy that Delete applies.
	OnDelete OnDelete
}

// Modify changes the mutable properties of volume id and returns the
// volume as it now is. Only the reclaim policy is mutable: it lives in the
// volume's record alone, so the change is one record write (a temporary
// file fsynced and renamed over the record, then the directory fsynced),
// which is at once the intent and its completion. A crash leaves the old or
// the new policy, never a mix, and the CO's retry (csi-resizer retries until
// it is told OK) records it again. Nothing on disk but the record changes.
//
// A volume that already has the requested properties is returned without a
// write, so retries are no-ops. A volume being created is ErrBusy; one whose
// delete has begun is ErrNotFound: its reclaim policy and archive
// destination were fixed when the delete was recorded.
//
// Modify excludes Delete (whose delete intent copies the policy from the
// record it read) and Expand (which rewrites the record with a new size): a
// concurrent one of either is ErrBusy, so neither can overwrite the other's
// change with a record read before it.
func (m *Manager) Modify(ctx context.Context, id string, req ModifyRequest) (Volume, error) {
	if !ValidID(id) {
		return Volume{}, fmt.Errorf("%.64q is not a volume ID issued by this driver: %w", id, ErrNotFound)
	}
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	release, err := m.Hold(id)
	if err != nil {
		return Volume{}, err
	}
	defer release()
	if !m.expanding.TryLock(id) {
		return Volume{}, fmt.Errorf("volume %s is being expanded: %w", id, ErrBusy)
	}
	defer m.expanding.Unlock(id)

	v, err := m.cat.Get(id)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
	case err != nil:
		return Volume{}, err
	case v.State == catalog.StateCreating:
		return Volume{}, fmt.Errorf("volume %s is still being created: %w", id, ErrBusy)
	case v.State != catalog.StateReady:
		return Volume{}, fmt.Errorf("volume %s is being deleted; its reclaim policy %s was fixed when the delete began: %w", id, v.OnDelete, ErrNotFound)
	}
	if req.OnDelete == "" || OnDelete(v.OnDelete) == req.OnDelete {
		return v, nil
	}
	old := v.OnDelete
	v.OnDelete = string(req.OnDelete)
	if err := m.cat.Put(v); err != nil {
		return Volume{}, err
	}
	klog.FromContext(ctx).V(2).Info("Volume modified", "volumeID", v.ID, "name", v.Name,
		"fromOnDelete", old, "onDelete", v.OnDelete)
	return v, nil
}
