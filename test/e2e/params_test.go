package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/framework"
)

// A StorageClass with parameters dirvol does not accept makes provisioning
// fail with a ProvisioningFailed event on the claim that names the
// parameter, so the user knows what to fix.
func TestBadStorageClassParameters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cases := []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"unknown key", map[string]string{"bogus": "x"}, "bogus"},
		{"bad onDelete", map[string]string{"onDelete": "sometimes"}, "onDelete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			class := badClass(t, e, tc.params)
			ns := e.NewNamespace(t)
			e.ClaimWithPod(t, ns, "data", class, "16Mi", "")
			ev := e.FindEvent(ns, "data", "ProvisioningFailed", time.Minute)
			if ev == nil {
				explainNoProvisioning(t, e, ns, class)
			}
			if !strings.Contains(ev.Message, tc.want) {
				t.Errorf("ProvisioningFailed does not name %q: %s", tc.want, ev.Message)
			}
		})
	}
}

// badClass creates a late-binding dirvol StorageClass with params, deleted
// when t ends.
func badClass(t *testing.T, e *framework.Env, params map[string]string) string {
	t.Helper()
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: fmt.Sprintf("e2e-bad-%04x", rand.IntN(1<<16))},
		Provisioner:       framework.DriverName,
		Parameters:        params,
		VolumeBindingMode: &wffc,
	}
	ctx := context.Background()
	if _, err := e.Kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StorageClass: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Kube.StorageV1().StorageClasses().Delete(ctx, sc.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete StorageClass %s: %v", sc.Name, err)
		}
	})
	return sc.Name
}

// explainNoProvisioning fails the test, saying why no ProvisioningFailed
// came. The usual reason: the driver's GetCapacity refuses the class's
// parameters, so no CSIStorageCapacity is published for the class, the
// scheduler (CSIDriver storageCapacity: true) finds no node with room, and
// CreateVolume, whose error the event would carry, is never called.
func explainNoProvisioning(t *testing.T, e *framework.Env, ns, class string) {
	t.Helper()
	caps, err := e.Capacities(context.Background(), class)
	if err == nil && len(caps) == 0 {
		sched := e.FindEvent(ns, "data", "FailedScheduling", time.Second)
		msg := "no FailedScheduling event"
		if sched != nil {
			msg = "FailedScheduling: " + sched.Message
		}
		t.Fatalf("no ProvisioningFailed event: no node publishes CSIStorageCapacity for class %s, "+
			"so its pods are never scheduled (%s) and CreateVolume is never called; the parameter error "+
			"shows only in csi-provisioner's log (GetCapacity failing). GetCapacity must answer for "+
			"parameters CreateVolume would refuse, so that the refusal reaches the user as this event", class, msg)
	}
	t.Fatalf("no ProvisioningFailed event on %s/data within a minute (capacities for %s: %v, %v)", ns, class, caps, err)
}
