// Package bench times bulk provisioning through Kubernetes: N claims, each
// with a pod, from creation to all Bound and all pods scheduled, and from
// deletion to all claims and PVs gone, on a one-node and a two-node local
// cluster. It counts the API requests of each client per claim (from
// kube-apiserver's audit log) and computes the floor that Kubernetes' own
// controllers set at their default client rate limits. Run it with `make
// bench-e2e`; plain `go test` runs no benchmark.
package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/dirvol/dirvol/test/e2e/cluster"
	"github.com/dirvol/dirvol/test/e2e/framework"
)

// EnvClaims lists the claim counts to run, comma-separated (default 100):
// DIRVOL_BENCH_CLAIMS=100,1000.
const EnvClaims = "DIRVOL_BENCH_CLAIMS"

// clients is how many goroutines create the claims and pods.
const clients = 10

func BenchmarkProvision(b *testing.B) {
	counts, err := claimCounts(os.Getenv(EnvClaims))
	if err != nil {
		b.Fatal(err)
	}
	for _, claims := range counts {
		for _, nodes := range []int{1, 2} {
			b.Run(fmt.Sprintf("claims=%d/nodes=%d", claims, nodes), func(b *testing.B) {
				var opts []cluster.NodeOptions
				for i := range nodes {
					// Room on each node for every pod of the round.
					opts = append(opts, cluster.NodeOptions{Name: fmt.Sprintf("node-%d", i), Pods: claims + 100})
				}
				e, stop, err := framework.Setup(context.Background(), framework.Options{Nodes: opts, Log: os.Stderr, AuditLog: true})
				if err != nil {
					b.Skip(err)
				}
				b.Cleanup(stop)
				b.ResetTimer()
				for range b.N {
					round(b, e, claims)
				}
			})
		}
	}
}

func claimCounts(s string) ([]int, error) {
	if s == "" {
		return []int{100}, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want claim counts such as 100,1000", EnvClaims, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// round creates the claims and pods, waits for all claims to bind and all
// pods to be scheduled, deletes pods and claims and waits for claims and PVs
// to be gone, and reports the durations, the spread of the per-claim bind
// times, and the API requests of each phase against the floor.
func round(b *testing.B, e *framework.Env, claims int) {
	b.StopTimer()
	ns := e.NewNamespace(b)
	w := watch(b, e, ns)
	b.StartTimer()
	ctx := context.Background()
	timeout := 10*time.Minute + time.Duration(claims)*time.Second

	start := time.Now()
	w.start(start)
	parallel(b, claims, func(i int) error {
		name := fmt.Sprintf("c%04d", i)
		if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, framework.PVC(ns, name, "dirvol", "1Mi"), metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := e.Kube.CoreV1().Pods(ns).Create(ctx, framework.Pod(ns, name, name, ""), metav1.CreateOptions{})
		return err
	})
	e.PollFor(b, timeout, fmt.Sprintf("%d claims Bound", claims), func(context.Context) (bool, error) {
		return w.bound() == claims, nil
	})
	allBound := time.Since(start)
	e.PollFor(b, timeout, fmt.Sprintf("%d pods scheduled", claims), func(context.Context) (bool, error) {
		return w.scheduled() == claims, nil
	})
	allScheduled := time.Since(start)
	bindEnd := time.Now()
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
	e.PollFor(b, timeout, "claims and PVs deleted", func(context.Context) (bool, error) {
		return w.gone(), nil
	})
	allDeleted := time.Since(start)
	deleteEnd := time.Now()
	w.stop()

	times := w.bindTimes()
	p50, p90 := times[len(times)/2], times[len(times)*9/10]
	b.ReportMetric(allBound.Seconds(), "s-all-bound")
	b.ReportMetric(p50.Seconds(), "s-p50-bound")
	b.ReportMetric(allDeleted.Seconds(), "s-all-deleted")
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("%d nodes, %d claims with pods: all Bound after %s (p50 %s, p90 %s; volumes per node %v); all pods scheduled after %s; deleted (claims and PVs gone) after %s; load average %s",
		len(e.Nodes), claims, allBound.Round(time.Millisecond), p50.Round(time.Millisecond), p90.Round(time.Millisecond), perNode,
		allScheduled.Round(time.Millisecond), allDeleted.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:3], " "))
	if e.AuditLog == "" {
		return
	}
	for _, phase := range []struct {
		name     string
		from, to time.Time
		took     time.Duration
	}{
		{"create to all Bound and scheduled", w.startedAt, bindEnd, allScheduled},
		{"delete to all gone", start, deleteEnd, allDeleted},
	} {
		r, err := readRequests(e.AuditLog, phase.from, phase.to)
		if err != nil {
			b.Fatal(err)
		}
		floor, who := r.floor()
		ratio := "n/a"
		if floor > 0 {
			ratio = fmt.Sprintf("%.2f", phase.took.Seconds()/floor.Seconds())
		}
		b.Logf("%s: %s; floor %s (%s at its default client limit); ratio to floor %s; API requests per claim by client:\n%s",
			phase.name, phase.took.Round(time.Millisecond), floor.Round(time.Millisecond), who, ratio, r.table(claims))
	}
}

// watcher follows the round's claims, pods and PVs through informers, so
// that waiting costs watches, not repeated lists of every object.
type watcher struct {
	factory, pvFactory informers.SharedInformerFactory
	ns                 string
	done               chan struct{}

	mu          sync.Mutex
	startedAt   time.Time
	boundAt     map[string]time.Duration
	scheduledAt map[string]bool
	claims, pvs map[string]bool // present now
}

func watch(b *testing.B, e *framework.Env, ns string) *watcher {
	w := &watcher{
		factory:   informers.NewSharedInformerFactoryWithOptions(e.Kube, 0, informers.WithNamespace(ns)),
		pvFactory: informers.NewSharedInformerFactory(e.Kube, 0),
		ns:        ns, done: make(chan struct{}),
		boundAt: map[string]time.Duration{}, scheduledAt: map[string]bool{},
		claims: map[string]bool{}, pvs: map[string]bool{},
	}
	onClaim := func(obj any) {
		c, ok := obj.(*corev1.PersistentVolumeClaim)
		if !ok {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.claims[c.Name] = true
		if _, seen := w.boundAt[c.Name]; !seen && c.Status.Phase == corev1.ClaimBound {
			w.boundAt[c.Name] = time.Since(w.startedAt)
		}
	}
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			w.mu.Lock()
			w.scheduledAt[p.Name] = true
			w.mu.Unlock()
		}
	}
	onPV := func(obj any) {
		if pv, ok := obj.(*corev1.PersistentVolume); ok && pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
			w.mu.Lock()
			w.pvs[pv.Name] = true
			w.mu.Unlock()
		}
	}
	gone := func(set func(*watcher) map[string]bool) func(any) {
		return func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(metav1.Object); ok {
				w.mu.Lock()
				delete(set(w), m.GetName())
				w.mu.Unlock()
			}
		}
	}
	handlers := []struct {
		inf     cache.SharedIndexInformer
		on      func(any)
		deleted func(any)
	}{
		{w.factory.Core().V1().PersistentVolumeClaims().Informer(), onClaim, gone(func(w *watcher) map[string]bool { return w.claims })},
		{w.factory.Core().V1().Pods().Informer(), onPod, func(any) {}},
		{w.pvFactory.Core().V1().PersistentVolumes().Informer(), onPV, gone(func(w *watcher) map[string]bool { return w.pvs })},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    h.on,
			UpdateFunc: func(_, obj any) { h.on(obj) },
			DeleteFunc: h.deleted,
		}); err != nil {
			b.Fatal(err)
		}
	}
	w.factory.Start(w.done)
	w.pvFactory.Start(w.done)
	for typ, ok := range w.factory.WaitForCacheSync(w.done) {
		if !ok {
			b.Fatalf("informer for %v did not sync", typ)
		}
	}
	for typ, ok := range w.pvFactory.WaitForCacheSync(w.done) {
		if !ok {
			b.Fatalf("informer for %v did not sync", typ)
		}
	}
	return w
}

func (w *watcher) start(at time.Time) {
	w.mu.Lock()
	w.startedAt = at
	w.mu.Unlock()
}

func (w *watcher) bound() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.boundAt)
}

func (w *watcher) scheduled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.scheduledAt)
}

// gone reports whether every claim and every PV of the round is deleted.
func (w *watcher) gone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.claims) == 0 && len(w.pvs) == 0
}

func (w *watcher) bindTimes() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, d := range w.boundAt {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func (w *watcher) stop() {
	close(w.done)
	w.factory.Shutdown()
	w.pvFactory.Shutdown()
}

// parallel runs fn(0..n-1) on clients goroutines.
func parallel(b *testing.B, n int, fn func(i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range clients {
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
