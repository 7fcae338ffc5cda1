package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

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
			ev := e.WaitEvent(t, ns, "data", "ProvisioningFailed")
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
