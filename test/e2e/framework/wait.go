package framework

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Poll calls cond every 250ms until it returns true, and fails the test
// with what after Timeout or on an error. A component that crashed
// meanwhile is named in the failure.
func (e *Env) Poll(t testing.TB, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	e.PollFor(t, Timeout, what, cond)
}

// PollFor is Poll with its own timeout.
func (e *Env) PollFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, cond)
	if err != nil {
		if e.Local != nil {
			if crash := e.Local.Check(); crash != nil {
				t.Fatalf("waiting for %s: %v\n%v", what, err, crash)
			}
		}
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// WaitBound waits until the claim is Bound and returns it and its PV.
func (e *Env) WaitBound(t testing.TB, ns, name string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	e.Poll(t, "PVC "+ns+"/"+name+" Bound", func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	})
	pv, err := e.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PV %s of PVC %s/%s: %v", pvc.Spec.VolumeName, ns, name, err)
	}
	return pvc, pv
}

// WaitScheduled waits until the pod has a node and returns it.
func (e *Env) WaitScheduled(t testing.TB, ns, name string) string {
	t.Helper()
	var node string
	e.Poll(t, "pod "+ns+"/"+name+" scheduled", func(ctx context.Context) (bool, error) {
		pod, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		node = pod.Spec.NodeName
		return node != "", nil
	})
	return node
}

// WaitPVGone waits until the PV no longer exists.
func (e *Env) WaitPVGone(t testing.TB, name string) {
	t.Helper()
	e.Poll(t, "PV "+name+" deleted", func(ctx context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// WaitPVPhase waits until the PV is in phase and returns it.
func (e *Env) WaitPVPhase(t testing.TB, name string, phase corev1.PersistentVolumePhase) *corev1.PersistentVolume {
	t.Helper()
	var pv *corev1.PersistentVolume
	e.Poll(t, "PV "+name+" "+string(phase), func(ctx context.Context) (bool, error) {
		var err error
		pv, err = e.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && pv.Status.Phase == phase, nil
	})
	return pv
}

// WaitEvent waits for an event with reason about the object named name in
// ns, and returns it.
func (e *Env) WaitEvent(t testing.TB, ns, name, reason string) *corev1.Event {
	t.Helper()
	ev := e.FindEvent(ns, name, reason, Timeout)
	if ev == nil {
		e.PollFor(t, 0, "event "+reason+" on "+ns+"/"+name, func(context.Context) (bool, error) { return false, nil })
	}
	return ev
}

// FindEvent waits up to timeout for an event with reason about the object
// named name in ns; nil when none came.
func (e *Env) FindEvent(ns, name, reason string, timeout time.Duration) *corev1.Event {
	var found *corev1.Event
	_ = wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for i, ev := range list.Items {
			if ev.InvolvedObject.Name == name && ev.Reason == reason {
				found = &list.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// WaitPath waits until rel exists (or, with exists false, is gone) on node.
func (e *Env) WaitPath(t testing.TB, node, rel string, exists bool) {
	t.Helper()
	what := rel + " on " + node
	if !exists {
		what += " gone"
	}
	e.Poll(t, what, func(ctx context.Context) (bool, error) {
		_, err := e.Disk.IsDir(ctx, node, rel)
		if errors.Is(err, fs.ErrNotExist) {
			return !exists, nil
		}
		return exists && err == nil, err
	})
}

// NodesWithPath returns the nodes on which rel exists.
func (e *Env) NodesWithPath(t testing.TB, rel string) []string {
	t.Helper()
	var nodes []string
	for _, n := range e.Nodes {
		_, err := e.Disk.IsDir(context.Background(), n, rel)
		switch {
		case err == nil:
			nodes = append(nodes, n)
		case !errors.Is(err, fs.ErrNotExist):
			t.Fatalf("%s on %s: %v", rel, n, err)
		}
	}
	return nodes
}

// ListDir lists rel on node ("" for a missing directory).
func (e *Env) ListDir(t testing.TB, node, rel string) []string {
	t.Helper()
	names, err := e.Disk.ListDir(context.Background(), node, rel)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("list %s on %s: %v", rel, node, err)
	}
	return names
}

// HasPrefix returns the first name with the prefix.
func HasPrefix(names []string, prefix string) (string, bool) {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return n, true
		}
	}
	return "", false
}
