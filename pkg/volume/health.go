package volume

import "fmt"

// HealthKind classifies a health issue the way CSI VolumeHealth does.
type HealthKind int

const (
	// Inaccessible: the volume cannot be used on this node right now.
	Inaccessible HealthKind = iota + 1
	// DataLoss: the volume's data is gone.
	DataLoss
	// Degraded: the volume works, but not as promised (its size is not
	// enforced right now). It does not stop it being published.
	Degraded
)

// HealthIssue is one adverse condition of a volume.
type HealthIssue struct {
	Kind HealthKind
	// Reason is a short CamelCase word for machines.
	Reason string
	// Message says what is wrong and what to look at.
	Message string
}

// Health reports what is wrong with a volume; none means healthy.
func (m *Manager) Health(v Volume) []HealthIssue {
	p, ok := m.pools[v.Pool]
	if !ok {
		return []HealthIssue{{Kind: Inaccessible, Reason: "PoolNotConfigured",
			Message: fmt.Sprintf("pool %q of this volume is not configured on this node; start the driver with --pool name=%s,path=...", v.Pool, v.Pool)}}
	}
	exists, err := p.Exists(v.ID)
	switch {
	case err != nil:
		return []HealthIssue{{Kind: Inaccessible, Reason: "DirectoryUnreadable",
			Message: fmt.Sprintf("cannot check the volume directory: %v", err)}}
	case !exists:
		path, _ := p.Path(v.ID)
		return []HealthIssue{{Kind: DataLoss, Reason: "DirectoryMissing",
			Message: fmt.Sprintf("volume directory %s is missing", path)}}
	}
	// A block volume's size is its file's length, whatever the pool's
	// limits do.
	if problem := p.SizeProblem(); problem != nil && !v.Block {
		return []HealthIssue{{Kind: Degraded, Reason: "SizeNotEnforced",
			Message: fmt.Sprintf("pool %q: %v; the volume can outgrow its size until then", v.Pool, problem)}}
	}
	return nil
}

// Blocking returns the issues that keep a volume from being used (all but
// Degraded ones).
func Blocking(issues []HealthIssue) []HealthIssue {
	var out []HealthIssue
	for _, i := range issues {
		if i.Kind != Degraded {
			out = append(out, i)
		}
	}
	return out
}
