package controller

import (
	"context"
	"sort"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/csihealth"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// page returns the items after token (an ID; "" starts at the beginning),
// at most max of them (0 = all), and the token for the next page. items are
// sorted by ID; valid says whether a token has the shape of an ID of their
// kind. Because the token is the last ID returned rather than an offset,
// items created or deleted between pages never shift the listing, and a
// token whose item has since been deleted still works.
func page[T any](items []T, id func(T) string, valid func(string) bool, token string, max int32) ([]T, string, error) {
	if token != "" && !valid(token) {
		return nil, "", status.Errorf(codes.Aborted, "starting_token %.64q was not issued by this driver; list again from the start", token)
	}
	start := sort.Search(len(items), func(i int) bool { return id(items[i]) > token })
	rest := items[start:]
	if max == 0 || int(max) >= len(rest) {
		return rest, "", nil
	}
	rest = rest[:max]
	return rest, id(rest[len(rest)-1]), nil
}

func volumeID(v volume.Volume) string { return v.ID }

// ListVolumes pages through the volumes of this node. No lock: it reads a
// catalog snapshot.
func (s *Server) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if err := validatePage(req.GetMaxEntries()); err != nil {
		return nil, err
	}
	vols, next, err := page(s.vols.List(), volumeID, volume.ValidID, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	out := &csi.ListVolumesResponse{NextToken: next, Entries: make([]*csi.ListVolumesResponse_Entry, 0, len(vols))}
	for _, v := range vols {
		out.Entries = append(out.Entries, &csi.ListVolumesResponse_Entry{
			Volume: s.csiVolume(v),
			Status: &csi.ListVolumesResponse_VolumeStatus{},
		})
	}
	return out, nil
}

// ControllerListVolumeHealth pages through the volumes and reports those
// with an adverse condition (for example a directory removed behind the
// driver's back). No lock.
func (s *Server) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	if err := validatePage(req.GetMaxEntries()); err != nil {
		return nil, err
	}
	vols, next, err := page(s.vols.List(), volumeID, volume.ValidID, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	out := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	for _, v := range vols {
		if h := s.health(v); len(h.GetHealthStatuses()) > 0 {
			out.Entries = append(out.Entries, h)
		}
	}
	return out, nil
}

// ControllerGetVolumeHealth reports one volume's health. No lock.
func (s *Server) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	if err := validateControllerGetVolumeHealth(req); err != nil {
		return nil, err
	}
	v, err := s.vols.Get(req.GetVolumeId())
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: s.health(v)}, nil
}

func (s *Server) health(v volume.Volume) *csi.VolumeHealth {
	return csihealth.FromIssues(v.ID, s.vols.Health(v))
}
