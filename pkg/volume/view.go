package volume

import (
	"context"
	"errors"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"k8s.io/klog/v2"
)

// The claim view (<pool>/by-pvc/<namespace>/<claim>/<pv> -> the volume's
// directory, see pool.ViewDir) lets an operator on the node find a claim's
// data by name. It is derived from the catalog: an entry is made while a
// volume is created, before it is recorded ready; it is removed when its
// delete begins, before the data is removed, retained or archived; and
// repairView rebuilds it at every start, so a crash anywhere leaves at
// worst an entry that the next start adds or removes. A failure to make or
// remove an entry is logged and never fails the volume operation: the view
// is for reading, nothing in the driver goes through it.

// claimOf returns the claim volume v was made for, and false when the
// provisioner did not say (no --extra-create-metadata): such a volume has
// no entry.
func claimOf(v Volume) (pool.Claim, bool) {
	if v.PVCNamespace == "" || v.PVCName == "" {
		return pool.Claim{}, false
	}
	return pool.Claim{Namespace: v.PVCNamespace, Name: v.PVCName, PV: v.PVName}, true
}

// linkView makes v's entry in the view of pool p.
func linkView(ctx context.Context, p pool.Pool, v Volume) {
	c, ok := claimOf(v)
	if !ok {
		return
	}
	logger := klog.FromContext(ctx)
	path, err := pool.NewView(p.Root()).Link(v.ID, c)
	if err != nil {
		logger.Error(err, "Cannot add the volume to the pool's claim view; the volume works, and the next start tries again",
			"volumeID", v.ID, "pvc", c.Namespace+"/"+c.Name)
		return
	}
	logger.V(4).Info("Volume added to the claim view", "volumeID", v.ID, "entry", path)
}

// unlinkView removes v's entry from the view of pool p.
func unlinkView(ctx context.Context, p pool.Pool, v Volume) {
	c, ok := claimOf(v)
	if !ok {
		return
	}
	if err := pool.NewView(p.Root()).Unlink(v.ID, c); err != nil {
		klog.FromContext(ctx).Error(err, "Cannot remove the volume from the pool's claim view; the next start removes it",
			"volumeID", v.ID, "pvc", c.Namespace+"/"+c.Name)
	}
}

// viewRepair is what repairView did to one pool's view.
type viewRepair struct {
	kept, added, removed, blocked int
}

// repairView makes the view of pool p match the catalog: exactly one entry
// for each ready volume of p made for a claim, in that claim's directory
// and pointing to it, and nothing else that the view owns. Symbolic links
// that do not belong are removed (removing a link loses no data); files and
// directories that are not the view's own are left and logged.
func (m *Manager) repairView(ctx context.Context, p pool.Pool) viewRepair {
	logger := klog.FromContext(ctx).WithValues("pool", p.Name())
	view := pool.NewView(p.Root())
	want := make(map[string]Volume)
	for _, v := range m.cat.List() {
		if _, ok := claimOf(v); ok && v.Pool == p.Name() && v.State == catalog.StateReady {
			want[v.ID] = v
		}
	}
	var r viewRepair
	entries, err := view.Entries()
	if err != nil {
		logger.Error(err, "Cannot read the pool's claim view; it is not repaired at this start")
		return r
	}
	// An entry belongs when it is a link in its volume's claim directory
	// named after the volume's PV or ID; of two such, the one named after
	// the PV is kept.
	belongs := func(e pool.ViewEntry) (Volume, bool) {
		v, ok := want[e.VolumeID]
		return v, ok && e.Link && e.Namespace == v.PVCNamespace && e.Claim == v.PVCName && (e.Name == v.PVName || e.Name == v.ID)
	}
	pvNamed := make(map[string]bool)
	for _, e := range entries {
		if v, ok := belongs(e); ok && e.Name == v.PVName {
			pvNamed[v.ID] = true
		}
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		if v, ok := belongs(e); ok && !have[v.ID] && (e.Name == v.PVName || !pvNamed[v.ID]) {
			have[v.ID] = true
			r.kept++
			continue
		}
		err := view.Remove(e)
		switch {
		case errors.Is(err, pool.ErrViewBlocked):
			r.blocked++
			logger.Info("Claim view holds something the driver did not put there; left in place for an operator",
				"path", e.Path())
		case err != nil:
			r.blocked++
			logger.Error(err, "Cannot remove a stale entry of the claim view", "path", e.Path())
		default:
			r.removed++
			logger.V(2).Info("Removed a stale entry of the claim view", "path", e.Path(), "volumeID", e.VolumeID)
		}
	}
	for id, v := range want {
		if have[id] {
			continue
		}
		c, _ := claimOf(v)
		if _, err := view.Link(id, c); err != nil {
			r.blocked++
			logger.Error(err, "Cannot add a volume to the claim view", "volumeID", id, "pvc", c.Namespace+"/"+c.Name)
			continue
		}
		r.added++
	}
	if err := view.PruneEmpty(); err != nil {
		logger.Error(err, "Cannot remove empty directories of the claim view")
	}
	return r
}
