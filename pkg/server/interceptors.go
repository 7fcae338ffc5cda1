package server

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// Verbosity of request and response dumps. Chatty calls (see isChatty) are
// dumped one level higher so that -v=4 shows the calls that change state.
const (
	dumpLevel       = 4
	chattyDumpLevel = 5
	failureLevel    = 2
)

// observe returns the unary interceptor that gives each call a contextual
// logger with "method" (and "volumeID" or "snapshotID" when the request
// names one), logs the call through protosanitizer.StripSecrets, and records
// its duration and status code in mm (csi_plugin_operations_seconds).
func observe(mm metrics.CSIMetricsManager) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		logger := klog.FromContext(ctx).WithValues("method", info.FullMethod)
		if r, ok := req.(interface{ GetVolumeId() string }); ok && r.GetVolumeId() != "" {
			logger = logger.WithValues("volumeID", r.GetVolumeId())
		}
		if r, ok := req.(interface{ GetSnapshotId() string }); ok && r.GetSnapshotId() != "" {
			logger = logger.WithValues("snapshotID", r.GetSnapshotId())
		}
		ctx = klog.NewContext(ctx, logger)

		level := dumpLevel
		if isChatty(info.FullMethod) {
			level = chattyDumpLevel
		}
		logger.V(level).Info("Request", "request", protosanitizer.StripSecrets(req))

		start := time.Now()
		resp, err := handler(ctx, req)
		duration := time.Since(start)
		mm.RecordMetrics(info.FullMethod, err, duration)

		if err != nil {
			code := status.Code(err)
			switch code {
			case codes.Internal, codes.Unknown, codes.DataLoss:
				logger.Error(err, "Request failed", "code", code, "duration", duration)
			default:
				logger.V(failureLevel).Info("Request failed", "code", code, "err", err, "duration", duration)
			}
			return resp, err
		}
		logger.V(level).Info("Response", "response", protosanitizer.StripSecrets(resp), "duration", duration)
		return resp, nil
	}
}

// isChatty reports whether method is one that sidecars and the kubelet call
// every few seconds and that changes nothing.
func isChatty(method string) bool {
	switch method {
	case csi.Identity_Probe_FullMethodName,
		csi.Identity_GetPluginInfo_FullMethodName,
		csi.Identity_GetPluginCapabilities_FullMethodName,
		csi.Controller_ControllerGetCapabilities_FullMethodName,
		csi.GroupController_GroupControllerGetCapabilities_FullMethodName,
		csi.Node_NodeGetCapabilities_FullMethodName,
		csi.Node_NodeGetInfo_FullMethodName:
		return true
	}
	return false
}

// recoverPanic is the unary interceptor that turns a panicking handler into
// an Internal error, logging the panic with its stack, so that one bad call
// does not take the driver down with it.
func recoverPanic(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(nil, "Handler panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error: %v", r)
		}
	}()
	return handler(ctx, req)
}
