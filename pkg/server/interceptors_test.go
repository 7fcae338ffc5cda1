package server

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

func TestObserve(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		req      any
		err      error
		want     []string
		dontWant []string
	}{
		{
			name:   "contextual logger and dumps without secrets",
			method: csi.Controller_DeleteVolume_FullMethodName,
			req:    &csi.DeleteVolumeRequest{VolumeId: "vol-1", Secrets: map[string]string{"password": "hunter2"}},
			want: []string{
				`INFO handler method="/csi.v1.Controller/DeleteVolume" volumeID="vol-1"`,
				"INFO Request ", "INFO Response ", "***stripped***",
			},
			dontWant: []string{"hunter2"},
		},
		{
			name:   "snapshot ID",
			method: csi.Controller_DeleteSnapshot_FullMethodName,
			req:    &csi.DeleteSnapshotRequest{SnapshotId: "snap-1"},
			want:   []string{`INFO handler method="/csi.v1.Controller/DeleteSnapshot" snapshotID="snap-1"`},
		},
		{
			name:     "chatty call not dumped at V(4)",
			method:   csi.Identity_Probe_FullMethodName,
			req:      &csi.ProbeRequest{},
			want:     []string{`INFO handler method="/csi.v1.Identity/Probe"`},
			dontWant: []string{"INFO Request ", "INFO Response ", "volumeID"},
		},
		{
			name:     "failure with its code",
			method:   csi.Controller_DeleteVolume_FullMethodName,
			req:      &csi.DeleteVolumeRequest{VolumeId: "vol-1"},
			err:      status.Error(codes.Aborted, "busy"),
			want:     []string{"INFO Request failed ", `code="Aborted"`},
			dontWant: []string{"INFO Response "},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(4), ktesting.BufferLogs(true)))
			ctx := klog.NewContext(context.Background(), logger)
			handler := func(ctx context.Context, _ any) (any, error) {
				klog.FromContext(ctx).Info("handler")
				if tc.err != nil {
					return nil, tc.err
				}
				return &csi.DeleteVolumeResponse{}, nil
			}
			intercept := observe(metrics.NewCSIMetricsManagerForPlugin(testDriver))
			_, err := intercept(ctx, tc.req, &grpc.UnaryServerInfo{FullMethod: tc.method}, handler)
			if status.Code(err) != status.Code(tc.err) {
				t.Fatalf("code %s, want %s", status.Code(err), status.Code(tc.err))
			}
			logs := logger.GetSink().(ktesting.Underlier).GetBuffer().String()
			for _, w := range tc.want {
				if !strings.Contains(logs, w) {
					t.Errorf("logs lack %s:\n%s", w, logs)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(logs, w) {
					t.Errorf("logs contain %s:\n%s", w, logs)
				}
			}
		})
	}
}

func TestRecoverPanic(t *testing.T) {
	handler := func(context.Context, any) (any, error) { panic("boom") }
	resp, err := recoverPanic(context.Background(), &csi.ProbeRequest{}, &grpc.UnaryServerInfo{FullMethod: csi.Identity_Probe_FullMethodName}, handler)
	if resp != nil {
		t.Errorf("response %v, want nil", resp)
	}
	if code := status.Code(err); code != codes.Internal {
		t.Errorf("code %s, want Internal", code)
	}
}
