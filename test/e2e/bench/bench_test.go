// Package bench times bulk provisioning through Kubernetes: 100 claims, each
// with a pod, from creation to all Bound, and from deletion to all claims
// and PVs gone, on a one-node and a two-node local cluster. Run it with
// `make bench-e2e`; plain `go test` runs no benchmark.
package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dirvol/dirvol/test/e2e/cluster"
	"github.com/dirvol/dirvol/test/e2e/framework"
)

// claims is how many claims (and pods) one round creates.
const claims = 100

func BenchmarkProvision100(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			var opts []cluster.NodeOptions
			for i := range nodes {
				opts = append(opts, cluster.NodeOptions{Name: fmt.Sprintf("node-%d", i)})
			}
			e, stop, err := framework.Setup(context.Background(), framework.Options{Nodes: opts, Log: os.Stderr})
			if err != nil {
				b.Skip(err)
			}
			b.Cleanup(stop)
			b.ResetTimer()
			for range b.N {
				round(b, e)
			}
		})
	}
}

// round creates the claims and pods, waits for all to bind, deletes them and
// waits for claims and PVs to be gone, and reports both durations and the
// spread of the per-claim bind times.
func round(b *testing.B, e *framework.Env) {
	b.StopTimer()
	ns := e.NewNamespace(b)
	b.StartTimer()
	ctx := context.Background()

	start := time.Now()
	parallel(b, func(i int) error {
		name := fmt.Sprintf("c%03d", i)
		if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, framework.PVC(ns, name, "dirvol", "1Mi"), metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := e.Kube.CoreV1().Pods(ns).Create(ctx, framework.Pod(ns, name, name, ""), metav1.CreateOptions{})
		return err
	})
	boundAt := map[string]time.Duration{}
	e.PollFor(b, 10*time.Minute, fmt.Sprintf("%d claims Bound", claims), func(ctx context.Context) (bool, error) {
		list, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range list.Items {
			if _, seen := boundAt[c.Name]; !seen && c.Status.Phase == corev1.ClaimBound {
				boundAt[c.Name] = time.Since(start)
			}
		}
		return len(boundAt) == claims, nil
	})
	allBound := time.Since(start)
	perNode := map[string]int{}
	pvs, err := e.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, pv := range pvs.Items {
		if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
			perNode[framework.PVNode(&pv)]++
		}
	}

	start = time.Now()
	zero := int64(0)
	if err := e.Kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := e.Kube.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	e.PollFor(b, 10*time.Minute, "claims and PVs deleted", func(ctx context.Context) (bool, error) {
		pvcs, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pvcs.Items) > 0 {
			return false, nil
		}
		pvs, err := e.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
				return false, nil
			}
		}
		return true, nil
	})
	allDeleted := time.Since(start)

	times := make([]time.Duration, 0, claims)
	for _, d := range boundAt {
		times = append(times, d)
	}
	slices.Sort(times)
	b.ReportMetric(allBound.Seconds(), "s-all-bound")
	b.ReportMetric(times[len(times)/2].Seconds(), "s-p50-bound")
	b.ReportMetric(allDeleted.Seconds(), "s-all-deleted")
	b.Logf("%d nodes: %d claims with pods: all Bound after %s (p50 %s, p90 %s; volumes per node %v); deleted (claims and PVs gone) after %s",
		len(e.Nodes), claims, allBound.Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond),
		times[len(times)*9/10].Round(time.Millisecond), perNode, allDeleted.Round(time.Millisecond))
}

// parallel runs fn(0..claims-1) on 10 goroutines.
func parallel(b *testing.B, fn func(i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, claims)
	next := make(chan int, claims)
	for i := range claims {
		next <- i
	}
	close(next)
	for range 10 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
