package volume

import (
	"context"
	"errors"
)

// Expand grows volume id to at least requiredBytes (and at most limitBytes
// when that is set). Placeholder: replaced by the expansion code.
func (m *Manager) Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (Volume, error) {
	return Volume{}, errors.New("volume expansion is not implemented yet")
}

// BlockPath returns the file that holds block volume v's bytes.
func (m *Manager) BlockPath(v Volume) (string, error) {
	p, ok := m.pools[v.Pool]
	if !ok {
		return "", ErrUnknownPool
	}
	return p.BlockPath(v.ID)
}
