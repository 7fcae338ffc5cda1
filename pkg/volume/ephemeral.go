package volume

import (
	"errors"
	"fmt"

	"github.com/dirvol/dirvol/pkg/catalog"
)

// EphemeralParameter marks, in a volume's record, a CSI ephemeral inline
// volume: one the node service made for a pod at NodePublishVolume and
// deletes at NodeUnpublishVolume. Its name is the kubelet's handle of the
// pod's inline volume. CreateVolume never records the key (the controller
// refuses it as a StorageClass parameter), so a volume that has it is one
// the node service made, and a persistent volume is never taken for one.
const EphemeralParameter = "csi.storage.k8s.io/ephemeral"

// IsEphemeral reports whether v is an ephemeral inline volume.
func IsEphemeral(v Volume) bool { return v.Parameters[EphemeralParameter] == "true" }

// EphemeralByName returns the ephemeral inline volume named name, in any
// state but "creating"; ErrNotFound when there is none (or the volume of
// that name is not ephemeral).
func (m *Manager) EphemeralByName(name string) (Volume, error) {
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	v, err := m.cat.GetByName(name)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return Volume{}, fmt.Errorf("ephemeral volume %.80q: %w", name, ErrNotFound)
	case err != nil:
		return Volume{}, err
	case !IsEphemeral(v) || v.State == catalog.StateCreating:
		return Volume{}, fmt.Errorf("ephemeral volume %.80q: %w", name, ErrNotFound)
	}
	return v, nil
}
