package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"k8s.io/klog/v2"
)

// archiveTimeFormat is the UTC timestamp at the end of an archive name.
const archiveTimeFormat = "20060102T150405Z"

// Delete applies the volume's reclaim policy and forgets it. The sequence
// is: record "deleting" (with the archive destination fixed), reclaim the
// directory, remove the record. Recovery finishes anything left "deleting".
func (m *Manager) Delete(ctx context.Context, id string) error {
	if !m.Ready() {
		return ErrNotReady
	}
	if !ValidID(id) {
		return fmt.Errorf("%.64q is not a volume ID issued by this driver: %w", id, ErrNotFound)
	}
	release, err := m.Hold(id)
	if err != nil {
		return err
	}
	defer release()
	v, err := m.cat.Get(id)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("volume %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if v.State == catalog.StateCreating {
		return fmt.Errorf("volume %s is still being created: %w", id, ErrBusy)
	}
	p, ok := m.pools[v.Pool]
	if !ok {
		// Checked before recording the intent, so the volume stays as it
		// was until the pool is configured again.
		return poolGone("volume "+v.ID, v.Pool)
	}
	if err := m.checkUnused(v, p); err != nil {
		return err
	}
	if v.State != catalog.StateDeleting {
		ready := v
		v.State = catalog.StateDeleting
		if OnDelete(v.OnDelete) == OnDeleteArchive {
			name := archiveName(v, m.now())
			// Two volumes with the same PV name archived within one second
			// (only possible outside Kubernetes) must not collide: the
			// destination is fixed here, before anything moves.
			taken, err := p.ArchiveTaken(name)
			if err != nil {
				return err
			}
			if taken {
				name += "_" + v.ID
			}
			v.ReclaimTarget = name
		}
		if err := m.cat.Put(v); err != nil {
			return err
		}
		// A publish that looked the volume up before the record said
		// "deleting" may have mounted it since the first look; from now on
		// the node refuses to publish it. Looking again closes that gap:
		// the volume goes back to ready, as it was.
		if err := m.checkUnused(v, p); err != nil {
			if perr := m.cat.Put(ready); perr != nil {
				return fmt.Errorf("%w; and the volume could not be put back to ready: %w", err, perr)
			}
			return err
		}
	}
	return m.finishDelete(ctx, v)
}

// checkUnused answers ErrInUse, naming the mount points (and the loop
// devices mounted nowhere), when v's data is in use on this node. Delete looks before it records "deleting", so that
// a refused delete leaves everything as it was, and once more after, for a
// publish that raced the record (the node publishes only volumes the
// catalog lists as ready).
func (m *Manager) checkUnused(v Volume, p pool.Pool) error {
	if m.inUse == nil {
		return nil
	}
	path, err := p.Path(v.ID)
	if v.Block {
		path, err = p.BlockPath(v.ID)
	}
	if err != nil {
		return err
	}
	refs, err := m.inUse.MountedAt(path, v.Block)
	if err != nil {
		return fmt.Errorf("check whether volume %s is still mounted: %w", v.ID, err)
	}
	if len(refs) > 0 {
		return fmt.Errorf("volume %s is still in use on this node, at %s: %w; unpublish it there first (NodeUnpublishVolume), then delete it (a loop device mounted nowhere goes by itself; retry)",
			v.ID, strings.Join(refs, ", "), ErrInUse)
	}
	return nil
}

// finishDelete reclaims the directory of a volume recorded as "deleting" and
// removes its record. Each step is idempotent, so recovery can call it again.
func (m *Manager) finishDelete(ctx context.Context, v Volume) error {
	logger := klog.FromContext(ctx)
	p, ok := m.pools[v.Pool]
	if !ok {
		return poolGone("volume "+v.ID, v.Pool)
	}
	path, err := p.Path(v.ID)
	if err != nil {
		return err
	}
	// The entry goes first, so that it never points to data being removed
	// or moved; a retained or archived volume is no longer the claim's.
	unlinkView(ctx, p, v)
	switch OnDelete(v.OnDelete) {
	case OnDeleteRetain:
		err = p.Retain(v.ID, pool.RetainNote{
			VolumeID: v.ID, Name: v.Name, PVName: v.PVName,
			PVCNamespace: v.PVCNamespace, PVCName: v.PVCName,
			CreatedAt: v.CreatedAt, RetainedAt: m.now().UTC(),
		})
		if errors.Is(err, pool.ErrNotFound) {
			logger.Info("Volume directory was already gone; nothing to retain", "volumeID", v.ID, "path", path)
			err = nil
		} else if err == nil {
			logger.Info("Volume retained: its directory stays on disk and no longer belongs to the driver",
				"volumeID", v.ID, "name", v.Name, "pvc", v.PVCNamespace+"/"+v.PVCName, "path", path)
		}
	case OnDeleteArchive:
		err = p.Archive(v.ID, v.ReclaimTarget)
		if errors.Is(err, pool.ErrNotFound) {
			logger.Info("Volume directory was already gone; nothing to archive", "volumeID", v.ID, "path", path)
			err = nil
		} else if err == nil {
			logger.Info("Volume archived", "volumeID", v.ID, "name", v.Name, "archive", v.ReclaimTarget)
		}
	default:
		err = p.Remove(v.ID)
		if err == nil {
			logger.V(2).Info("Volume deleted", "volumeID", v.ID, "name", v.Name, "path", path)
		}
	}
	if err != nil {
		return fmt.Errorf("reclaim volume %s (onDelete=%s): %w", v.ID, v.OnDelete, err)
	}
	if err := m.cat.Delete(v.ID); err != nil {
		return err
	}
	m.ledger.remove(v.ID)
	return nil
}

// archiveName is <pvc-namespace>_<pvc-name>_<pv-name>_<UTC time> when the
// provisioner passed PVC metadata, else <pv-name>_<UTC time>. The parts were
// validated as Kubernetes names at create time, so they hold no slash.
func archiveName(v Volume, now time.Time) string {
	pv := v.PVName
	if pv == "" {
		pv = v.Name
	}
	stamp := now.UTC().Format(archiveTimeFormat)
	if v.PVCNamespace != "" && v.PVCName != "" {
		if full := strings.Join([]string{v.PVCNamespace, v.PVCName, pv, stamp}, "_"); len(full) <= maxArchiveName {
			return full
		}
		// Kubernetes names can add up past what one path element holds;
		// the PV name alone still identifies the volume.
	}
	if keep := maxArchiveName - len(stamp) - 1; len(pv) > keep {
		pv = pv[:keep]
	}
	return pv + "_" + stamp
}

// maxArchiveName leaves room for "_<volume ID>" appended on a collision
// within the 255 bytes of a path element.
const maxArchiveName = 255 - 1 - 36
