package controller

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What each RPC locks, in one place. Every lock is a try-lock: a key that is
// held answers Aborted at once (CSI: "an operation for this volume is already
// pending"), so that sidecar retries do not queue behind a slow disk. Locks
// are taken after validation and released when the RPC returns.
//
//	CreateVolume               volume name; for a restore or clone also the
//	                           source's ID, so that the source is not deleted,
//	                           expanded or snapshotted while it is copied
//	DeleteVolume               volume ID
//	ControllerExpandVolume     volume ID
//	ControllerModifyVolume     volume ID
//	CreateSnapshot             snapshot name, then the source volume's ID
//	DeleteSnapshot             snapshot ID
//
// No lock, because each reads catalog records that are consistent by
// themselves and changes nothing: ValidateVolumeCapabilities, ListVolumes,
// ControllerGetVolume, GetCapacity, ControllerGetVolumeHealth,
// ControllerListVolumeHealth, ListSnapshots, GetSnapshot,
// ControllerGetCapabilities.

// lockKind separates the key spaces: a volume may share its name with a
// snapshot.
type lockKind int

const (
	volumeNameLock lockKind = iota
	snapshotNameLock
	volumeIDLock
	snapshotIDLock
)

// lockKey is one key of the controller's try-locks.
type lockKey struct {
	kind lockKind
	key  string
}

func lockVolumeName(name string) lockKey   { return lockKey{volumeNameLock, name} }
func lockSnapshotName(name string) lockKey { return lockKey{snapshotNameLock, name} }
func lockVolumeID(id string) lockKey       { return lockKey{volumeIDLock, id} }
func lockSnapshotID(id string) lockKey     { return lockKey{snapshotIDLock, id} }

func (k lockKey) String() string {
	what := map[lockKind]string{volumeNameLock: "volume name", snapshotNameLock: "snapshot name",
		volumeIDLock: "volume", snapshotIDLock: "snapshot"}[k.kind]
	return fmt.Sprintf("%s %.64q", what, k.key)
}

// lock takes every key, in order, or none: when one is held it releases
// those it took and answers Aborted naming the busy key. An empty key is
// skipped, so that an optional key (a content source) can be passed as is.
func (s *Server) lock(keys ...lockKey) (unlock func(), err error) {
	taken := make([]lockKey, 0, len(keys))
	release := func() {
		for i := len(taken) - 1; i >= 0; i-- {
			s.locks.Unlock(taken[i])
		}
	}
	for _, k := range keys {
		if k.key == "" {
			continue
		}
		if !s.locks.TryLock(k) {
			release()
			return nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress; retry", k)
		}
		taken = append(taken, k)
	}
	return release, nil
}
